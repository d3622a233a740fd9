# Source: 002_5b9dc20728a74790.txt, "Creating and Configuring a Pool".
# Indentation restored (the source page lost it). Added the final print so
# there is output to compare. Note: the first two pools are never closed, as in
# the tutorial (they are cleaned up at interpreter exit).
import multiprocessing

if __name__ == "__main__":
    # Create a pool with 4 workers (explicit count)
    pool = multiprocessing.Pool(processes=4)

    # Create a pool matching CPU count (default)
    pool = multiprocessing.Pool() # Usually optimal

    # Always clean up with context manager
    with multiprocessing.Pool(processes=4) as pool:
        # Use pool here
        pass
    # Pool automatically closed and workers terminated
    print("pools created")  # added
