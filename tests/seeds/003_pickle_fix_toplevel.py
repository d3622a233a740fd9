# Source: 003_cf5ca4e9aedfac62.txt, "'Can't pickle' Errors" (corrected pattern). Unchanged.
# Tested on Python 3.11
# broken pattern (nested functions confuse pickle under spawn):

# def main():
#     def work(x):
#         return x + 1
#     with Pool(2) as pool:
#         pool.map(work, range(3))

# corrected pattern:
from multiprocessing import Pool


def work(x):
    return x + 1


def main():
    with Pool(2) as pool:
        print(pool.map(work, range(3)))


if __name__ == "__main__":
    main()
