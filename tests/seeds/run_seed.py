"""Helpers for running the tutorial seed scripts against another implementation.

swap_imports(source) rewrites only import lines so a script uses ferropool:
    import multiprocessing             -> import ferropool as multiprocessing
    import multiprocessing as mp       -> import ferropool as mp
    from multiprocessing import X, Y   -> from ferropool import X, Y
    from concurrent.futures import ProcessPoolExecutor[, ...]
                                       -> from ferropool import ProcessPoolExecutor[, ...]
Submodule imports (``from multiprocessing.pool import ThreadPool``,
``import multiprocessing.shared_memory``) are left alone (stay stdlib).

check_output(expected_path, stdout) compares stdout with a ``.expected`` file:
one Python regex per line, each must fullmatch the corresponding output line.
Optional directive lines at the very top of the file:
    #unordered      lines are compared as a multiset (each output line is
                    matched by exactly one pattern line)
    #prefix N       ordered, but output may stop early: it must match the
                    first k pattern lines for some N <= k <= len(patterns)
    #returncode N   expected exit status (default 0); see directives()
    #min-python X.Y script needs at least this CPython; see directives()
    #by-value       ferropool sends what this script fails to pickle by value
                    (cloudpickle): the expectation holds without cloudpickle,
                    and with it the script runs (exit status 0)
"""
import re

_DIRECTIVE = re.compile(
    r"#(unordered|by-value|prefix (\d+)|returncode (-?\d+)|min-python (\d+)\.(\d+))$"
)
_IMPORT_ITEM = re.compile(r"multiprocessing(\s+as\s+\w+)?$")


def _swap_line(line):
    code, sep, comment = line.partition("#")
    indent = code[: len(code) - len(code.lstrip())]
    stripped = code.strip()
    if stripped.startswith("from "):
        new = re.sub(r"^from\s+multiprocessing\s+import\b", "from ferropool import", stripped)
        new = new.replace("concurrent.futures import ProcessPoolExecutor",
                          "ferropool import ProcessPoolExecutor")
    elif stripped.startswith("import "):
        items = [item.strip() for item in stripped[len("import "):].split(",")]
        for i, item in enumerate(items):
            m = _IMPORT_ITEM.match(item)
            if m:
                items[i] = "ferropool" + (m.group(1) or " as multiprocessing")
        new = "import " + ", ".join(items)
    else:
        return line
    return line if new == stripped else indent + new + ("  " + sep + comment if sep else "")


def swap_imports(source: str) -> str:
    """Point the script's multiprocessing / ProcessPoolExecutor imports at ferropool."""
    return "\n".join(_swap_line(line) for line in source.split("\n"))


def _parse(expected_path):
    with open(expected_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    directives = {}
    while lines and _DIRECTIVE.match(lines[0]):
        m = _DIRECTIVE.match(lines.pop(0))
        if m.group(1) == "unordered":
            directives["unordered"] = True
        elif m.group(1) == "by-value":
            directives["by_value"] = True
        elif m.group(2) is not None:
            directives["prefix"] = int(m.group(2))
        elif m.group(3) is not None:
            directives["returncode"] = int(m.group(3))
        else:
            directives["min_python"] = (int(m.group(4)), int(m.group(5)))
    return directives, lines


def directives(expected_path) -> dict:
    """Return the directives of an .expected file, with defaults filled in:
    {'unordered': bool, 'prefix': int or None, 'returncode': int, 'min_python': tuple,
     'by_value': bool}"""
    d, _ = _parse(expected_path)
    return {"unordered": d.get("unordered", False), "prefix": d.get("prefix"),
            "returncode": d.get("returncode", 0), "min_python": d.get("min_python", (3, 0)),
            "by_value": d.get("by_value", False)}


def _report(expected_path, why, patterns, out):
    body = "\n".join(["--- expected patterns:"] + ["  " + p for p in patterns]
                     + ["--- actual stdout:"] + ["  " + o for o in out])
    return f"{expected_path}: {why}\n{body}"


def _multiset_match(patterns, out):
    """Bipartite matching output line -> pattern. Returns unmatched output indices."""
    owner = {}  # pattern index -> output index

    def assign(o, seen):
        for p, pat in enumerate(patterns):
            if p not in seen and re.fullmatch(pat, out[o]):
                seen.add(p)
                if p not in owner or assign(owner[p], seen):
                    owner[p] = o
                    return True
        return False

    return [o for o in range(len(out)) if not assign(o, set())]


def check_output(expected_path, stdout) -> None:
    """Raise AssertionError (with a readable diff) if stdout does not match."""
    d, patterns = _parse(expected_path)
    out = stdout.replace("\r\n", "\n").splitlines()
    if d.get("unordered"):
        missing = _multiset_match(patterns, out)
        if missing or len(out) != len(patterns):
            why = (f"unordered mismatch: {len(out)} lines for {len(patterns)} patterns; "
                   f"unmatched output lines: {[out[i] for i in missing]}")
            raise AssertionError(_report(expected_path, why, patterns, out))
        return
    low = d.get("prefix", len(patterns))
    if not low <= len(out) <= len(patterns):
        why = f"expected {low}..{len(patterns)} lines, got {len(out)}"
        raise AssertionError(_report(expected_path, why, patterns, out))
    for i, (pat, line) in enumerate(zip(patterns, out), 1):
        if not re.fullmatch(pat, line):
            why = f"line {i}: {line!r} does not match /{pat}/"
            raise AssertionError(_report(expected_path, why, patterns, out))
