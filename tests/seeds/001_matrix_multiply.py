# Source: 001_d724670a0dc8fd79.txt, "Real-World starmap() Example" (matrix_multiply.py). Unchanged.
# matrix_multiply.py
import multiprocessing as mp

def multiply_matrices(matrix_a, matrix_b):
    """Multiply two 2x2 matrices."""
    result = [[0, 0], [0, 0]]
    for i in range(2):
        for j in range(2):
            for k in range(2):
                result[i][j] += matrix_a[i][k] * matrix_b[k][j]
    return result

if __name__ == "__main__":
    tasks = [
        ([[1, 2], [3, 4]], [[5, 6], [7, 8]]),
        ([[2, 0], [1, 3]], [[4, 1], [2, 5]]),
        ([[1, 1], [1, 1]], [[1, 2], [3, 4]]),
    ]

    with mp.Pool(3) as pool:
        results = pool.starmap(multiply_matrices, tasks)

    for (a, b), result in zip(tasks, results):
        print(f"Result: {result}")
