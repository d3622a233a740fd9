# Source: 002_5b9dc20728a74790.txt, "Chunksize: Optimizing Task Scheduling".
# Indentation restored (the source page lost it). Added the final print so
# there is output to compare.
import multiprocessing

def fast_task(x):
    return x ** 2

if __name__ == "__main__":
    with multiprocessing.Pool(processes=4) as pool:
        items = range(1_000_000)

        # Default chunksize (auto): overhead for 1M tasks
        results = pool.map(fast_task, items)

        # Explicit chunksize: fewer context switches
        results = pool.map(fast_task, items, chunksize=10_000)
    print(len(results), results[:4], results[-1])  # added
