# Source: 003_cf5ca4e9aedfac62.txt, "Benchmarking a CPU-Bound Task Across Process Counts". Unchanged.
# Prints tab-separated timings.
# Tested on Python 3.11
import time
from multiprocessing import Pool


def sum_squares_chunk(args):
    start, end = args
    return sum(i * i for i in range(start, end))


def work_ranges(n_workers, total):
    chunk = total // n_workers
    ranges = []
    s = 0
    for w in range(n_workers):
        e = s + chunk if w < n_workers - 1 else total
        ranges.append((s, e))
        s = e
    return ranges


def main():
    total = 5_000_000

    t0 = time.perf_counter()
    sum(i * i for i in range(total))
    t_serial = time.perf_counter() - t0
    print(f"serial\t1\t{t_serial:.4f}")

    for n in (2, 4, 8):
        t0 = time.perf_counter()
        with Pool(n) as pool:
            parts = pool.map(sum_squares_chunk, work_ranges(n, total))
            sum(parts)
        t_pool = time.perf_counter() - t0
        print(f"pool\t{n}\t{t_pool:.4f}")


if __name__ == "__main__":
    main()
