# Source: 001_d724670a0dc8fd79.txt, "Controlling Chunk Size" (chunksize_demo.py).
# Size reduced: sleep factor x * 0.01 -> x * 0.0005 (the original takes ~35 s).
# chunksize_demo.py
import multiprocessing as mp
import time

def slow_job(x):
    """Jobs take longer for larger numbers."""
    time.sleep(x * 0.0005)
    return x ** 2

if __name__ == "__main__":
    numbers = list(range(100))

    # Large chunks: less overhead, but uneven distribution
    start = time.time()
    with mp.Pool(4) as pool:
        results = pool.map(slow_job, numbers, chunksize=25)
    print(f"chunksize=25: {time.time() - start:.2f}s")

    # Small chunks: more overhead, but even distribution
    start = time.time()
    with mp.Pool(4) as pool:
        results = pool.map(slow_job, numbers, chunksize=5)
    print(f"chunksize=5: {time.time() - start:.2f}s")
