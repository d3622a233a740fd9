# Source: 003_cf5ca4e9aedfac62.txt, "Using Pool.apply_async()" (get(timeout=1)). Unchanged.
# The pool's __exit__ terminates the still-sleeping worker, so it finishes in ~1 s.
# Prints the exception class name: multiprocessing.TimeoutError is named "TimeoutError".
# Tested on Python 3.11
import time
from multiprocessing import Pool


def slow_task(x):
    time.sleep(x)
    return x


if __name__ == "__main__":
    with Pool(2) as pool:
        res = pool.apply_async(slow_task, (5,))
        try:
            print(res.get(timeout=1))
        except Exception as e:
            print("timed out:", type(e).__name__)
