# Source: 002_5b9dc20728a74790.txt, "imap(): Non-Blocking Iterator".
# Indentation restored (the source page lost it). Size reduced: sleep 1 s -> 0.1 s.
import multiprocessing
import time

def slow_square(x):
    time.sleep(0.1) # Simulate slow task
    return x ** 2

if __name__ == "__main__":
    with multiprocessing.Pool(processes=4) as pool:
        numbers = range(10)

        # Return immediately; iterate as results arrive
        result_iterator = pool.imap(slow_square, numbers)

        for i, result in enumerate(result_iterator):
            print(f"Task {i} result: {result}")
            # Can process each result as soon as it's ready
