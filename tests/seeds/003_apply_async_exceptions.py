# Source: 003_cf5ca4e9aedfac62.txt, "Handling Exceptions Raised Inside Workers" (apply_async).
# Wrapped: risky() copied from the previous example (the tutorial refers to it).
# Tested on Python 3.11
# Uses risky() defined in the example above
from multiprocessing import Pool


def risky(x):  # added (from the example above)
    if x == 2:
        raise ValueError("bad input: 2")
    return x * 10


if __name__ == "__main__":
    with Pool(2) as pool:
        results = [pool.apply_async(risky, (i,)) for i in range(4)]
        for r in results:
            try:
                print(r.get())
            except ValueError as e:
                print("caught:", e)
