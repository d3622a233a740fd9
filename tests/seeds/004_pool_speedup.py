# Source: 004_e8317ffdc017e6b9.txt, "Code Examples: Pool speedup example".
# Size reduced: sleep 0.1 s -> 0.005 s per item (the original serial part takes 10 s).
from multiprocessing import Pool
import time

def slow_task(x):
    time.sleep(0.005)
    return x ** 2

if __name__ == '__main__':
    items = list(range(100))
    
    # Serial
    start = time.time()
    serial_results = [slow_task(x) for x in items]
    print(f"Serial: {time.time() - start:.2f}s")
    
    # Parallel
    start = time.time()
    with Pool(4) as pool:
        parallel_results = pool.map(slow_task, items)
    print(f"Parallel: {time.time() - start:.2f}s")
