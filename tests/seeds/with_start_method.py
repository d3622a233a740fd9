"""Runs a script as __main__ after choosing the process-wide start method:
    python with_start_method.py METHOD SCRIPT [ARGS...]
With HIDE_MODULES=a,b in the environment, those modules cannot be imported
(as if they were not installed)."""
import multiprocessing
import os
import runpy
import sys

for hidden in filter(None, os.environ.get("HIDE_MODULES", "").split(",")):
    sys.modules[hidden] = None

method, script = sys.argv[1], sys.argv[2]
multiprocessing.set_start_method(method)
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
