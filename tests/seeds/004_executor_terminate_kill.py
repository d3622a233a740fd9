# Source: 004_e8317ffdc017e6b9.txt, "New Pool Management (Python 3.14+)" (fragment).
# NEEDS PYTHON 3.14+: ProcessPoolExecutor.terminate_workers()/kill_workers().
# On 3.11-3.13 it fails with AttributeError (after the queued tasks finish).
# Wrapped fragment: added imports, main guard, task() (sleeps briefly so workers
# are busy when terminated) and the two final prints.
import time
from concurrent.futures import ProcessPoolExecutor


def task(i):
    time.sleep(0.5)
    return i * i


if __name__ == "__main__":
    with ProcessPoolExecutor(max_workers=4) as executor:
        futures = [executor.submit(task, i) for i in range(10)]

        # New in 3.14: forcefully stop workers
        executor.terminate_workers()  # Graceful termination
        executor.kill_workers()       # Immediate kill
    print("submitted:", len(futures))  # added
    print("workers stopped")  # added
