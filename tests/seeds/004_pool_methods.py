# Source: 004_e8317ffdc017e6b9.txt, "Pool Methods" (fragment).
# Wrapped fragment: added import, main guard, func()/items/a/b/args and the prints.
from multiprocessing import Pool


def func(x, y=0):
    return x + y


if __name__ == "__main__":
    items = [1, 2, 3, 4]
    a, b = 2, 3
    args = (5,)
    with Pool(4) as pool:
        # Synchronous methods
        results = pool.map(func, items)        # Returns list
        print("map:", results)  # added
        results = pool.starmap(func, [(a,b)])  # Unpack args
        print("starmap:", results)  # added

        # Async methods (return immediately)
        result = pool.apply_async(func, args)  # Single call
        async_map = pool.map_async(func, items)  # Parallel map

        # Get async results
        value = result.get(timeout=30)
        values = async_map.get()
    print("apply_async:", value)  # added
    print("map_async:", values)  # added
