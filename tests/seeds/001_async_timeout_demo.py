# Source: 001_d724670a0dc8fd79.txt, "Async With Timeout and Error Handling" (async_timeout_demo.py).
# Size reduced: worker sleep 1 s -> 0.2 s (timeouts unchanged).
# async_timeout_demo.py
import multiprocessing as mp
import time

def work_with_error(should_fail):
    """Simulate work that might fail."""
    time.sleep(0.2)
    if should_fail:
        raise ValueError("Something went wrong!")
    return "Success!"

if __name__ == "__main__":
    with mp.Pool(2) as pool:
        result_ok = pool.apply_async(work_with_error, (False,))
        result_bad = pool.apply_async(work_with_error, (True,))

        # Wait up to 2 seconds
        try:
            print("Result 1:", result_ok.get(timeout=2))
        except TimeoutError:
            print("Timed out!")

        # Catch exceptions from worker
        try:
            print("Result 2:", result_bad.get(timeout=2))
        except Exception as e:
            print(f"Worker raised: {e}")
