# Source: 003_cf5ca4e9aedfac62.txt, "Python Multiprocessing Starmap Example". Unchanged.
# Tested on Python 3.11
from multiprocessing import Pool


def label_power(label, exponent):
    return f"{label} ^ {exponent} = {2 ** exponent}"


if __name__ == "__main__":
    work = [("A", 1), ("B", 2), ("C", 3), ("D", 4)]
    with Pool(2) as pool:
        out = pool.starmap(label_power, work)
    print(out)
