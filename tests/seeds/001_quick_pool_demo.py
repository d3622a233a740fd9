# Source: 001_d724670a0dc8fd79.txt, "Quick Example" (quick_pool_demo.py). Unchanged.
# quick_pool_demo.py
import multiprocessing as mp
import time

def square(x):
    """Simulate CPU-bound work."""
    time.sleep(0.1)
    return x ** 2

if __name__ == "__main__":
    numbers = [1, 2, 3, 4, 5]

    # Sequential: 5 * 0.1 = 0.5 seconds
    start = time.time()
    results_seq = [square(n) for n in numbers]
    print(f"Sequential: {time.time() - start:.2f}s, Results: {results_seq}")

    # Parallel with 4 workers: ~0.2 seconds
    start = time.time()
    with mp.Pool(processes=4) as pool:
        results_par = pool.map(square, numbers)
    print(f"Parallel: {time.time() - start:.2f}s, Results: {results_par}")
