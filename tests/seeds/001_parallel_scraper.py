# Source: 001_d724670a0dc8fd79.txt, "Real-World Project: Parallel Web Scraper" (parallel_scraper.py).
# Fetch stubbed: `from urllib.request import urlopen` is replaced by a local
# stand-in urlopen() that returns canned JSON (same record counts as the real
# endpoints) after a short sleep. No network access. Prints non-ASCII (check mark):
# run with a UTF-8 stdout (e.g. PYTHONIOENCODING=utf-8).
# parallel_scraper.py
import multiprocessing as mp
import json
import time
from urllib.error import URLError

_CANNED = {  # stand-in data (added)
    "https://jsonplaceholder.typicode.com/posts/1": {"id": 1},
    "https://jsonplaceholder.typicode.com/posts/2": {"id": 2},
    "https://jsonplaceholder.typicode.com/posts/3": {"id": 3},
    "https://jsonplaceholder.typicode.com/users": [{"id": i} for i in range(10)],
    "https://jsonplaceholder.typicode.com/comments?postId=1": [{"id": i} for i in range(5)],
    "https://jsonplaceholder.typicode.com/albums": [{"id": i} for i in range(100)],
}


class _FakeResponse:  # stand-in (added)
    def __init__(self, body):
        self._body = body

    def read(self):
        return self._body

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def urlopen(url, timeout=5):  # stand-in for urllib.request.urlopen (added)
    time.sleep(0.05)
    if url not in _CANNED:
        raise URLError("stub: unknown url")
    return _FakeResponse(json.dumps(_CANNED[url]).encode())


def fetch_and_parse(url):
    """Fetch JSON from URL and return record count."""
    try:
        start = time.time()
        with urlopen(url, timeout=5) as response:
            data = json.loads(response.read().decode())
        elapsed = time.time() - start

        record_count = 0
        if isinstance(data, list):
            record_count = len(data)
        elif isinstance(data, dict):
            record_count = 1

        return {
            'url': url,
            'status': 'success',
            'records': record_count,
            'time': f"{elapsed:.2f}s"
        }
    except URLError as e:
        return {
            'url': url,
            'status': 'error',
            'error': str(e),
            'records': 0,
            'time': '0s'
        }

if __name__ == "__main__":
    # Real public APIs for demo
    urls = [
        "https://jsonplaceholder.typicode.com/posts/1",
        "https://jsonplaceholder.typicode.com/posts/2",
        "https://jsonplaceholder.typicode.com/posts/3",
        "https://jsonplaceholder.typicode.com/users",
        "https://jsonplaceholder.typicode.com/comments?postId=1",
        "https://jsonplaceholder.typicode.com/albums",
    ]

    print(f"Scraping {len(urls)} endpoints in parallel...\n")

    start = time.time()
    with mp.Pool(4) as pool:
        results = pool.map(fetch_and_parse, urls)
    elapsed = time.time() - start

    for result in results:
        status_icon = "✓" if result['status'] == 'success' else "✗"
        print(f"{status_icon} {result['url']}")
        print(f"  Records: {result['records']}, Time: {result['time']}")

    print(f"\nTotal time: {elapsed:.2f}s")
