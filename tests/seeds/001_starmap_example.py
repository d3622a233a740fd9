# Source: 001_d724670a0dc8fd79.txt, "starmap() Basics" (starmap_example.py). Unchanged.
# starmap_example.py
import multiprocessing as mp

def power(base, exponent):
    """Compute base^exponent."""
    return base ** exponent

if __name__ == "__main__":
    # Each tuple unpacks as (base, exponent)
    pairs = [(2, 3), (3, 4), (5, 2), (10, 3)]

    with mp.Pool(2) as pool:
        results = pool.starmap(power, pairs)

    for (b, e), result in zip(pairs, results):
        print(f"{b}^{e} = {result}")
