# Source: 000_cd703d72864d1374.txt, "Chunk Size Optimization" -> imap_unordered fragment.
# Wrapped fragment: added import, main guard, process(), handle() (prints) and items.
from multiprocessing import Pool


def process(item):
    return item * item


def handle(result):
    print(result)


if __name__ == "__main__":
    items = range(50)
    with Pool(4) as pool:
        for result in pool.imap_unordered(process, items, chunksize=10):
            handle(result)
