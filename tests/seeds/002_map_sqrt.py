# Source: 002_5b9dc20728a74790.txt, "map(): Simple and Blocking".
# Indentation restored (the source page lost it).
import multiprocessing
import math

def compute_sqrt(x):
    """Compute square root."""
    return math.sqrt(x)

if __name__ == "__main__":
    with multiprocessing.Pool(processes=4) as pool:
        numbers = [1, 4, 9, 16, 25, 36, 49, 64]

        # Block until all results are ready
        results = pool.map(compute_sqrt, numbers)

        print(results) # [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
