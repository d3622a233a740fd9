# Source: 001_d724670a0dc8fd79.txt, "imap() for Large Datasets" (imap_streaming.py).
# Size reduced: per-item sleep 0.2 s -> 0.001 s (the original takes ~50 s).
# imap_streaming.py
import multiprocessing as mp
import time

def process_item(item_id):
    """Simulate processing."""
    time.sleep(0.001)
    return f"Processed {item_id}"

if __name__ == "__main__":
    items = range(1000)

    with mp.Pool(4) as pool:
        # imap returns an iterator
        for i, result in enumerate(pool.imap(process_item, items, chunksize=10)):
            if (i + 1) % 100 == 0:
                print(f"Completed {i + 1} items...")

    print("Done!")
