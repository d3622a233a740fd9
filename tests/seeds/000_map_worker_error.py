# Source: 000_cd703d72864d1374.txt, "Error Handling / Exceptions in Workers" (map fragment).
# Wrapped fragment: added import and main guard.
from multiprocessing import Pool


def risky(n):
    if n == 42:
        raise ValueError("bad number")
    return n * 2


if __name__ == "__main__":
    with Pool(4) as pool:
        try:
            results = pool.map(risky, range(100))
        except ValueError as e:
            print(f"Worker error: {e}")
