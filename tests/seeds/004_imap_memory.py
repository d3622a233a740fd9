# Source: 004_e8317ffdc017e6b9.txt, "imap for Memory Efficiency" (fragment).
# Wrapped fragment: added import, main guard, func(), process() (prints) and
# huge_list (size reduced to 20 items).
from multiprocessing import Pool


def func(x):
    return x * x


def process(result):
    print(result)


if __name__ == "__main__":
    huge_list = list(range(20))
    with Pool(4) as pool:
        # Returns iterator (lazy evaluation)
        for result in pool.imap(func, huge_list, chunksize=100):
            process(result)

        # Unordered for faster results
        for result in pool.imap_unordered(func, huge_list):
            process(result)  # Results may come out of order
