# Source: 000_cd703d72864d1374.txt, "Error Handling / Exceptions in Workers" (apply_async fragment).
# Wrapped fragment: added import, main guard, risky() from the previous fragment.
from multiprocessing import Pool


def risky(n):
    if n == 42:
        raise ValueError("bad number")
    return n * 2


if __name__ == "__main__":
    with Pool(4) as pool:
        futures = [pool.apply_async(risky, (n,)) for n in range(100)]
        for i, future in enumerate(futures):
            try:
                result = future.get(timeout=30)
            except ValueError:
                print(f"Item {i} failed")
