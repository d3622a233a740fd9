# Source: 002_5b9dc20728a74790.txt, "Timeout and Cleanup" (imap with TimeoutError).
# Indentation restored (the source page lost it). Size reduced: sleep 2 s -> 0.1 s.
import multiprocessing
import time

def task(x):
    time.sleep(0.1)
    return x ** 2

if __name__ == "__main__":
    with multiprocessing.Pool(processes=4) as pool:
        result_iter = pool.imap(task, range(10), chunksize=1)

        for i, result in enumerate(result_iter):
            try:
                print(f"Result {i}: {result}")
            except multiprocessing.TimeoutError:
                print(f"Task {i} timed out")
                break
