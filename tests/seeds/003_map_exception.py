# Source: 003_cf5ca4e9aedfac62.txt, "Handling Exceptions Raised Inside Workers" (map). Unchanged.
# Tested on Python 3.11
from multiprocessing import Pool


def risky(x):
    if x == 2:
        raise ValueError("bad input: 2")
    return x * 10


if __name__ == "__main__":
    with Pool(2) as pool:
        try:
            results = pool.map(risky, range(4))
        except ValueError as e:
            print("caught:", e)
