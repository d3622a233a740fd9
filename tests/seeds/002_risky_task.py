# Source: 002_5b9dc20728a74790.txt, "Handling Exceptions in Worker Tasks".
# Indentation restored (the source page lost it). Otherwise unchanged, including
# the tutorial's bug: in the second block the try/except only wraps print(), so
# the ValueError raised by the imap_unordered iterator for x == 5 escapes and
# the script EXITS WITH STATUS 1 (traceback on stderr) after printing 0-9
# "Task i: ..." lines (how many depends on completion order).
import multiprocessing

def risky_task(x):
    if x == 5:
        raise ValueError("Cannot process 5")
    return x ** 2

if __name__ == "__main__":
    with multiprocessing.Pool(processes=4) as pool:
        try:
            results = pool.map(risky_task, range(10))
        except ValueError as e:
            print(f"Task failed: {e}")

# Better: catch per-result
if __name__ == "__main__":
    with multiprocessing.Pool(processes=4) as pool:
        for i, result in enumerate(pool.imap_unordered(risky_task, range(10))):
            try:
                print(f"Task {i}: {result}")
            except Exception as e:
                print(f"Task {i} failed: {e}")
