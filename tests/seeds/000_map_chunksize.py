# Source: 000_cd703d72864d1374.txt, "Chunk Size Optimization" (fragment).
# Wrapped fragment: added import, main guard, process()/items, the `results =`
# assignment and the final print (so there is output to compare).
from multiprocessing import Pool


def process(item):
    return item * 2


if __name__ == "__main__":
    items = list(range(1000))
    with Pool(4) as pool:
        # Default: chunksize=1 (calculated internally as len(iterable) // (4 * pool_size))
        results = pool.map(process, items, chunksize=100)
    print(results[:5], results[-1], len(results))  # added
