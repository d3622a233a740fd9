# Source: 003_cf5ca4e9aedfac62.txt, "Using Pool.map() for Parallel Iteration" (chunksize=3).
# Wrapped: square() copied from the previous example (the tutorial refers to it).
# Tested on Python 3.11
# Uses square() defined in the example above
from multiprocessing import Pool


def square(x):  # added (from the example above)
    return x * x


if __name__ == "__main__":
    with Pool(4) as pool:
        out = pool.map(square, range(12), chunksize=3)
    print(out)
