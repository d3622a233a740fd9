# Source: 003_cf5ca4e9aedfac62.txt, "Using Lock with Shared Counters" (Pool initializer). Unchanged.
# Passes a Lock and a Value to the workers through initializer/initargs. After
# the import swap, Lock and Value come from the swapped module too.
# Tested on Python 3.11
from multiprocessing import Pool, Lock, Value

lock = None
counter = None


def init_worker(shared_lock, shared_counter):
    global lock, counter
    lock = shared_lock
    counter = shared_counter


def increment_with_pool(_):
    with lock:
        counter.value += 1


if __name__ == "__main__":
    shared_lock = Lock()
    shared_counter = Value("i", 0)
    n = 1000
    with Pool(
        processes=4,
        initializer=init_worker,
        initargs=(shared_lock, shared_counter),
    ) as pool:
        pool.map(increment_with_pool, range(n))
    print("final:", shared_counter.value)
    print("expected:", n)
