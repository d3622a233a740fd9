# Source: 000_cd703d72864d1374.txt, "Profiling Pool Performance" (fragment).
# Wrapped fragment: added main guard around the module-level calls, process()/data.
import time
from multiprocessing import Pool


def process(x):
    return sum(i * i for i in range(x))


def benchmark(pool_size, data):
    start = time.perf_counter()
    with Pool(pool_size) as pool:
        pool.map(process, data)
    return time.perf_counter() - start


if __name__ == "__main__":
    data = [20_000] * 40

    # Compare sequential vs parallel
    sequential = benchmark(1, data)
    parallel = benchmark(4, data)
    speedup = sequential / parallel
    print(f"Speedup: {speedup:.1f}x")  # ideal: 4.0x, realistic: 2-3.5x
