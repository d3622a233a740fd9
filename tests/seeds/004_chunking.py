# Source: 004_e8317ffdc017e6b9.txt, "Chunking for Performance" (fragment).
# Wrapped fragment: added import, main guard, func(), the `with Pool(4)` block,
# the result assignments and the final print.
from multiprocessing import Pool


def func(x):
    return x * 3


if __name__ == "__main__":
    with Pool(4) as pool:
        # Default: sends one item at a time (high overhead)
        r1 = pool.map(func, range(10000))

        # Better: send chunks
        r2 = pool.map(func, range(10000), chunksize=100)
    print(r1 == r2, len(r2), r2[:3], r2[-1])  # added
