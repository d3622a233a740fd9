# Source: 001_d724670a0dc8fd79.txt, "apply_async() Basics" (apply_async_demo.py).
# Size reduced: worker sleep 2 s -> 0.5 s, main-loop sleep 0.3 s -> 0.1 s.
# No network access: slow_fetch only sleeps, as in the tutorial.
# apply_async_demo.py
import multiprocessing as mp
import time

def slow_fetch(url):
    """Simulate slow network fetch."""
    time.sleep(0.5)
    return f"Data from {url}"

if __name__ == "__main__":
    urls = ["http://api.example.com/1", "http://api.example.com/2"]

    with mp.Pool(2) as pool:
        # Start both tasks, don't wait
        result1 = pool.apply_async(slow_fetch, ("http://api.example.com/1",))
        result2 = pool.apply_async(slow_fetch, ("http://api.example.com/2",))

        # Do other work while tasks run
        for i in range(5):
            print(f"Main thread working... {i}")
            time.sleep(0.1)

        # Retrieve results
        print(result1.get())  # Blocks until ready
        print(result2.get())
