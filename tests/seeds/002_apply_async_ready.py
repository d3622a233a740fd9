# Source: 002_5b9dc20728a74790.txt, "apply_async(): Flexible, Returns Future-like Object".
# Indentation restored (the source page lost it; time.sleep(1) placed inside the if).
# Size reduced: worker sleep 2 s -> 0.5 s, main sleep 1 s -> 0.1 s.
import multiprocessing
import time

def process_item(item_id):
    time.sleep(0.5)
    return f"Processed {item_id}"

if __name__ == "__main__":
    with multiprocessing.Pool(processes=4) as pool:
        # Submit one task
        async_result = pool.apply_async(process_item, args=(42,))

        # Check if done without blocking
        if not async_result.ready():
            print("Task is running...")
            time.sleep(0.1)

        # Block and get result with optional timeout
        result = async_result.get(timeout=5)
        print(result)
