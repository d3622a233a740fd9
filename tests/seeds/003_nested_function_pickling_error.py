# Source: 003_cf5ca4e9aedfac62.txt, "broken pattern (nested functions confuse pickle
# under spawn)", written in the tutorial as comments; here uncommented, with the
# import and the call of main() that the fragment leaves out.
# INTENTIONALLY BROKEN: with the stdlib this prints nothing on stdout and EXITS
# WITH STATUS 1 (AttributeError / PicklingError "Can't pickle local object" on stderr).
from multiprocessing import Pool


def main():
    def work(x):
        return x + 1
    with Pool(2) as pool:
        pool.map(work, range(3))


if __name__ == "__main__":
    main()
