# Source: 000_cd703d72864d1374.txt, "Worker Crashes" (maxtasksperchild fragment).
# Wrapped fragment: added import, main guard, leaky_function()/big_dataset and the final print.
from multiprocessing import Pool

_leak = []


def leaky_function(x):
    _leak.append(x)  # simulated per-worker memory leak
    return x * x


if __name__ == "__main__":
    big_dataset = range(1000)
    with Pool(4, maxtasksperchild=100) as pool:
        # Each worker restarts after processing 100 tasks
        results = pool.map(leaky_function, big_dataset)
    print(len(results), sum(results))  # added
