# Source: 001_d724670a0dc8fd79.txt, "Basic Pool.map() Example" (process_numbers.py). Unchanged.
# process_numbers.py
import multiprocessing as mp

def is_prime(n):
    """Check if n is prime (CPU-bound)."""
    if n < 2:
        return False
    for i in range(2, int(n**0.5) + 1):
        if n % i == 0:
            return False
    return True

if __name__ == "__main__":
    numbers = [2, 17, 23, 50, 97, 100, 101, 200]

    with mp.Pool(processes=4) as pool:
        primes = pool.map(is_prime, numbers)

    for num, is_p in zip(numbers, primes):
        print(f"{num}: {'Prime' if is_p else 'Not prime'}")
