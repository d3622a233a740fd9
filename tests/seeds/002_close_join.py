# Source: 002_5b9dc20728a74790.txt, "Timeout and Cleanup" (close/join fragment).
# Indentation restored. Wrapped fragment: added some_function()/items and the final print.
import multiprocessing


def some_function(x):
    return x + 100


if __name__ == "__main__":
    items = range(10)
    pool = multiprocessing.Pool(processes=4)

    try:
        results = pool.map(some_function, items)
    finally:
        pool.close() # No new tasks accepted
        pool.join() # Wait for workers to finish
    print(results)  # added
