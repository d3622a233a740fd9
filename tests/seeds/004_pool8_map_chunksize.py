# Source: 004_e8317ffdc017e6b9.txt, "Real World Context": the inline fragment
# `Pool(8).map(extract_features, images, chunksize=500)`. Wrapped: a stand-in
# `extract_features` and 2,000 fake "images" (the tutorial's 100,000 photos are
# not at hand); the pool is left unclosed, as in the fragment; added a print.
from multiprocessing import Pool


def extract_features(image):
    return sum(image) % 97


if __name__ == "__main__":
    images = [bytes([i % 256, (i * 7) % 256, (i * 13) % 256]) for i in range(2000)]
    features = Pool(8).map(extract_features, images, chunksize=500)
    print(len(features), sum(features))
