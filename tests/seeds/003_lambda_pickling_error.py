# Source: 003_cf5ca4e9aedfac62.txt, "broken pattern: lambda is not picklable under spawn". Unchanged.
# INTENTIONALLY BROKEN: with the stdlib this prints nothing on stdout and EXITS
# WITH STATUS 1 (PicklingError / AttributeError "Can't pickle ... <lambda>" on stderr).
# Tested on Python 3.11
# broken pattern: lambda is not picklable under spawn
from multiprocessing import Pool

if __name__ == "__main__":
    with Pool(2) as pool:
        pool.map(lambda x: x * 2, range(4))
