# Source: 003_cf5ca4e9aedfac62.txt, "How to Set the Start Method Explicitly" (get_context). Unchanged.
# Needs the "spawn" start method via mp.get_context("spawn").Pool.
# Tested on Python 3.11
import multiprocessing as mp

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        print("mapped:", pool.map(abs, [-1, -2, -3]))
    print("context start method:", ctx.get_start_method())
