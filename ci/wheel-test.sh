#!/usr/bin/env bash
# make wheel-test: installs the wheel in dist/ (not the checkout) into a fresh
# virtual environment of every CPython 3.9-3.13 found, and runs the test suite
# against it from a copy of tests/ (with benches/, examples/ and docs/, which
# tests use) outside the source tree, so that `import ferropool` can only find the
# wheel. WHEEL_TEST_PYTHONS="3.11 3.13" narrows the versions.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
wheel=$(ls "$root"/dist/ferropool-*.whl | head -n 1)
work=$(mktemp -d /tmp/ferropool-wheel-test.XXXXXX)
status=0
tested=0
for v in ${WHEEL_TEST_PYTHONS:-3.9 3.10 3.11 3.12 3.13}; do
    python=$(command -v "python$v" || true)
    if [ -z "$python" ] || ! "$python" -c pass 2>/dev/null; then
        # pyenv's shim answers only for the selected versions: ask pyenv itself.
        python=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/"python$v" 2>/dev/null | tail -n 1 || true)
    fi
    if [ -z "$python" ] || ! "$python" -c pass 2>/dev/null; then
        echo "== python$v: not found here, skipped"
        continue
    fi
    echo "== python$v with $(basename "$wheel")"
    "$python" -m venv "$work/venv-$v"
    "$work/venv-$v/bin/python" -m pip install -q "$wheel[test]"
    mkdir "$work/run-$v"
    cp -r "$root/tests" "$root/benches" "$root/examples" "$root/docs" "$root/pyproject.toml" "$work/run-$v/"
    (
        cd "$work/run-$v"
        "$work/venv-$v/bin/python" -c \
            "import ferropool, sys; assert '$work/venv-$v' in ferropool.__file__, ferropool.__file__"
        "$work/venv-$v/bin/python" -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-}
        # The Dask-cluster tests, in a pytest process of their own (tests/conftest.py).
        "$work/venv-$v/bin/python" -m pytest -q -p no:cacheprovider -m dask ${PYTEST_ARGS:-}
    ) || status=1
    tested=$((tested + 1))
done
rm -rf "$work"
if [ "$tested" -eq 0 ]; then
    echo "no CPython 3.9-3.13 found to test the wheel with"
    exit 1
fi
exit $status
