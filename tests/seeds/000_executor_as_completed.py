# Source: 000_cd703d72864d1374.txt, "Pool vs ProcessPoolExecutor" (fragment).
# Wrapped fragment: added main guard, process()/items and the `else: print` branch
# (so successful results are visible). process() fails for item 3 so the
# tutorial's error branch runs too. The tutorial's single import line
# `from concurrent.futures import ProcessPoolExecutor, as_completed` is split in
# two so only ProcessPoolExecutor is swapped; as_completed stays stdlib.
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import as_completed


def process(item):
    if item == 3:
        raise ValueError(f"cannot process {item}")
    return item * 10


if __name__ == "__main__":
    items = range(8)
    with ProcessPoolExecutor(max_workers=4) as executor:
        futures = {executor.submit(process, item): item for item in items}
        for future in as_completed(futures):
            item = futures[future]
            try:
                result = future.result()
            except Exception as e:
                print(f"{item} failed: {e}")
            else:  # added
                print(f"{item} -> {result}")  # added
