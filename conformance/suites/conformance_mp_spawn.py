"""CPython's multiprocessing tests under the 'spawn' start method."""

from test._test_multiprocessing import install_tests_in_module_dict

install_tests_in_module_dict(globals(), "spawn")
