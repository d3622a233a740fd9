"""Runs a script as __main__ after choosing the process-wide start method:
    python with_start_method.py METHOD SCRIPT [ARGS...]"""
import multiprocessing
import runpy
import sys

method, script = sys.argv[1], sys.argv[2]
multiprocessing.set_start_method(method)
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
