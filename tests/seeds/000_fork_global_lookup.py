# Source: 000_cd703d72864d1374.txt, "Global Variables with fork" (fragment).
# Wrapped fragment: added import, main guard, load_big_table()/items and the final print.
# The tutorial relies on fork copy-on-write; the table is built at module level,
# so the script also works under spawn/forkserver (workers rebuild it on import).
from multiprocessing import Pool


def load_big_table():
    return {i: i * i for i in range(10_000)}


LOOKUP_TABLE = load_big_table()  # loaded once in parent


def process(item):
    return LOOKUP_TABLE[item]  # reads copy-on-write memory


if __name__ == "__main__":
    items = [0, 1, 5, 10, 9999]
    with Pool(4) as pool:
        results = pool.map(process, items)
    print(results)  # added
