"""Reporting: the ratio tables, their notes and summary, the run's metadata,
and the progress bar (JSON: ``results``; the chart: ``chart``). The rows
that compare ferropool with the stdlib make the main table; rows comparing
other implementations (``Row.ratio_of``: rows 11, ferropool.dask against
the local engine) get a table of their own after it."""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from .adapters import versions
from .results import BenchResults, Check, Measurement, RowPhases, RowResult
from .workloads import FERROPOOL_VS_STDLIB, LOADED_WORST_ROUND_TARGET, Config


def _unit(t: float) -> Tuple[float, str]:
    if t < 1e-3:
        return 1e6, "µs"
    if t < 1:
        return 1e3, "ms"
    return 1.0, "s"


def busy(n: int) -> str:
    """ "2 CPU-bound processes", "1 CPU-bound process"."""
    return f"{n} CPU-bound process" + ("" if n == 1 else "es")


def fmt_seconds(t: Optional[float]) -> str:
    if t is None:
        return "-"
    scale, unit = _unit(t)
    if unit == "µs":
        return f"{t * scale:.0f} µs"
    if unit == "ms":
        return f"{t * scale:.3g} ms" if t >= 0.1 else f"{t * scale:.2f} ms"
    return f"{t:.2f} s"


def fmt_span(m: Measurement) -> str:
    """The rounds' min–max in the unit of their median, e.g. "38.2–45.0"."""
    if m.median is None or m.low is None or m.high is None:
        return ""
    scale, _ = _unit(m.median)
    return f"{m.low * scale:.3g}–{m.high * scale:.3g}"


def _cell(rr: RowResult, impl: str, spans: bool) -> str:
    m = rr.results.get(impl)
    if m is None:
        return "-"
    if m.error is not None:
        if m.error.startswith("n/a"):
            return "n/a"
        return "WRONG" if m.error.startswith("wrong result") else "error"
    if rr.row.kind == "efficiency":
        return f"{100 * m.times[0]:.0f} %"
    text = fmt_seconds(m.median)
    if spans and len(m.times) > 1:
        text += f" ({fmt_span(m)})"
    return text


def _ratio(r: Optional[float]) -> str:
    return "" if r is None else f"{r:.2f}"


# The target and met cells of a row without targets (reported only).
NO_TARGET = "-"


def _target(phases: RowPhases) -> str:
    row, parts = phases.row, []
    if row.target is None:
        return NO_TARGET
    if phases.quiet is not None and row.target is not None:
        if row.kind == "efficiency":
            parts.append(f">= {100 * row.target:.0f} %")
        else:
            parts.append(f"<= {row.target:.2f}")
    if phases.quiet is not None and row.cold_target is not None:
        parts.append(f"cold <= {row.cold_target:.2f}")
    if phases.loaded is not None and row.kind != "efficiency":
        if row.loaded_target is not None:
            parts.append(f"loaded <= {row.loaded_target:.2f}")
        if phases.quiet is None:
            parts.append(f"worst <= {LOADED_WORST_ROUND_TARGET:.2f}")
    return "; ".join(parts)


# How the met column names a missed check.
_MISSED = {
    "ratio": "quiet",
    "efficiency": "quiet",
    "cold": "cold",
    "loaded worst round": "worst",
    "loaded median": "loaded",
}


def _met(phases: RowPhases) -> str:
    if phases.row.target is None:
        return NO_TARGET
    met = phases.met
    if met is None:
        return ""
    if met:
        return "yes"
    return "NO: " + ",".join(_MISSED[c.name] for c in phases.checks() if not c.met)


def _groups(results: BenchResults) -> List[List[RowPhases]]:
    """The rows by what their ratio compares, in the order they came
    (ferropool / stdlib first)."""
    groups: Dict[Tuple[str, str], List[RowPhases]] = {}
    for phases in results.rows():
        groups.setdefault(phases.row.ratio_of, []).append(phases)
    return list(groups.values())


def table_lines(results: BenchResults, impls: Sequence[str], markdown: bool = False) -> List[str]:
    """One table per kind of ratio (``_groups``), a blank line between:
    per row, each implementation's median (quiet, where the run has a
    quiet phase; Markdown adds min–max), the ratio, the loaded ratio and
    its worst round, the cold ratio, the targets and whether they are met.
    A table has a column for each implementation its rows ran on."""
    lines: List[str] = []
    for group in _groups(results):
        ran = {impl for p in group for rr in (p.quiet, p.loaded) if rr for impl in rr.results}
        if lines:
            lines.append("")
        lines += _table(results, group, [i for i in impls if i in ran], markdown)
    return lines


def _table(
    results: BenchResults, group: List[RowPhases], impls: Sequence[str], markdown: bool
) -> List[str]:
    both = bool(results.quiet) and bool(results.loaded)
    loaded_only = not results.quiet
    cold = any(p.quiet is not None and p.quiet.cold_ratio is not None for p in group)
    ratio_of = group[0].row.ratio_of
    ratio = "ratio" if ratio_of == FERROPOOL_VS_STDLIB else " / ".join(ratio_of)
    header = ["workload", *impls, ratio]
    header += ["loaded", "worst"] if both else (["worst"] if loaded_only else [])
    header += ["cold"] if cold else []
    header += ["target", "met"]
    body = []
    for phases in group:
        main = phases.main
        line = [f"{phases.row.label} {phases.row.title}"]
        line += [_cell(main, impl, markdown) for impl in impls]
        line.append(_ratio(main.ratio))
        if both:
            loaded = phases.loaded
            line.append(_ratio(loaded.ratio) if loaded else "")
            line.append(_ratio(loaded.worst_round_ratio) if loaded else "")
        elif loaded_only:
            line.append(_ratio(main.worst_round_ratio))
        if cold:
            line.append(_ratio(phases.quiet.cold_ratio) if phases.quiet else "")
        line += [_target(phases), _met(phases)]
        body.append(line)
    if markdown:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + [":---:"]) + "|",
        ]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in body]
        return lines
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = []
    for line in [header, *body]:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return lines


def notes(results: BenchResults) -> List[str]:
    """One line per n/a, error or wrong result, deduplicated."""
    seen: Dict[str, List[str]] = {}
    for rr in results.all():
        if rr.row.kind == "efficiency":
            continue
        where = rr.row.label + (" loaded" if rr.load else "")
        for impl, m in rr.results.items():
            if m.error is not None:
                seen.setdefault(f"{impl}: {m.error}", []).append(where)
    return [f"{msg} (workload {', '.join(dict.fromkeys(labels))})" for msg, labels in seen.items()]


def unmet(results: BenchResults) -> List[RowPhases]:
    return [phases for phases in results.rows() if phases.met is False]


def _missed_text(check: Check, kind: str) -> str:
    if kind == "efficiency":
        return f"{100 * check.value:.0f} % < {100 * check.target:.0f} %"
    return f"{check.name} {check.value:.2f} > {check.target:.2f}"


def summary_line(results: BenchResults) -> str:
    rows = results.rows()
    if rows and all(p.row.target is None for p in rows):
        return "no targets: these rows are reported only"
    missing = unmet(results)
    if not missing:
        return "every target met"
    parts = []
    for phases in missing:
        row = phases.row
        missed = ", ".join(_missed_text(c, row.kind) for c in phases.checks() if not c.met)
        parts.append(f"{row.label} {row.title} ({missed})")
    return "targets not met: " + "; ".join(parts)


def ratio_names(phases: Sequence[RowPhases]) -> str:
    """What the ratios divide: "ferropool / stdlib", and the rows that
    compare others, e.g. "ferropool / stdlib; 11a, 11b: ferropool-dask /
    ferropool"."""
    labels: Dict[Tuple[str, str], List[str]] = {}
    for p in phases:
        labels.setdefault(p.row.ratio_of, []).append(p.row.label)
    parts = []
    for ratio_of, rows in labels.items():
        text = " / ".join(ratio_of)
        if ratio_of != FERROPOOL_VS_STDLIB:
            text = f"{', '.join(dict.fromkeys(rows))}: {text}"
        parts.append(text)
    return "; ".join(parts)


def remote_lines(results: BenchResults, processes: int) -> List[str]:
    """The remote rows (11): what they compare, then per row the time per
    task of each side (its median / the row's tasks) and what opening each
    case took, untimed by the rounds (for ferropool-dask, starting its
    LocalCluster)."""
    remote = [p for p in results.rows() if p.row.kind == "remote"]
    if not remote:
        return []
    labels = ", ".join(dict.fromkeys(p.row.label for p in remote))
    out = [
        f"{labels}: ferropool-dask = ferropool.dask.Pool({processes}) on a LocalCluster of "
        f"{processes} single-threaded worker processes it starts, against ferropool.Pool"
        f"({processes}), the local engine: the cost of going remote (no target)."
    ]
    for p in remote:
        row, rr = p.row, p.main
        far, near = row.ratio_of
        parts = []
        medians = rr.value(far), rr.value(near)
        if medians[0] is not None and medians[1] is not None and row.n:
            far_task, near_task = medians[0] / row.n, medians[1] / row.n
            sign = "+" if far_task >= near_task else "-"
            extra = fmt_seconds(abs(far_task - near_task))
            parts.append(
                f"per task (median / {row.n:,}) {near} {fmt_seconds(near_task)}, "
                f"{far} {fmt_seconds(far_task)} ({sign}{extra} remote)"
            )
        setup = [
            f"{impl} {fmt_seconds(statistics.median(m.setup))}"
            for impl, m in rr.results.items()
            if m.setup
        ]
        if setup:
            parts.append("set-up, untimed (pool made and warmed up): " + ", ".join(setup))
        if parts:
            out.append(f"{row.label}: " + "; ".join(parts) + ".")
    return out


def metadata(
    cfg: Config, impls: Sequence[str], load: int = 0, also_load: int = 0
) -> Dict[str, Any]:
    """The run's circumstances. ``load``: a loaded-only run's CPU-bound
    processes; ``also_load``: the loaded phase's, beside a quiet one."""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "processes": cfg.processes,
        "start_method": cfg.start_method,
        "quick": cfg.quick,
        "repeats": cfg.repeats,
        "script_rounds": cfg.script_rounds,
        "peer_budget_s": cfg.peer_budget_s,
        "load": load,
        "also_load": also_load,
        "implementations": list(impls),
        "versions": versions(impls),
        "ferropool_source": _source_revision(),
    }


def _source_revision() -> Optional[str]:
    """The git commit ferropool was built from, when it runs from a checkout
    (an editable install); "+modified" when the working tree differs."""
    spec = importlib.util.find_spec("ferropool")  # finds it without importing it
    if spec is None or spec.origin is None:
        return None
    # <root>/python/ferropool/__init__.py; in a git worktree .git is a file.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(spec.origin))))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read only: no index refresh

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, timeout=10, env=env
        ).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("+modified" if dirty else "")) or None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def report_lines(results: BenchResults, meta: Dict[str, Any], markdown: bool = False) -> List[str]:
    impls = meta["implementations"]
    lines = table_lines(results, impls, markdown)
    lines.append("")
    rounds = meta["repeats"]
    if meta.get("harness") == "pytest-benchmark":
        how = (
            "one implementation after the other, each in a fresh interpreter of its own "
            "(start-up, payload and whole-script rows: a fresh interpreter or process per round)"
        )
    else:
        how = (
            "the rounds interleaved across the implementations, each implementation in a fresh "
            f"interpreter of its own (peers: fewer rounds once a row has taken them "
            f"{meta.get('peer_budget_s', 4.0):g} s)"
        )
    has_script = any(p.row.kind == "script" for p in results.rows())
    script_rounds = f" (10: {meta.get('script_rounds', rounds)})" if has_script else ""
    lines.append(
        f"ratio = {ratio_names(results.rows())} (lower is better), of the medians of {rounds} "
        f"round{'' if rounds == 1 else 's'}{script_rounds}, "
        f"{how}; times are medians"
        + (" (min–max)" if markdown else "")
        + f". {meta['processes']} workers, start method {meta['start_method']!r} "
        "(start-up and whole-script rows: the method named)."
    )
    if results.loaded:
        n = results.load
        what = "every row" if not results.quiet else "every row again"
        lines.append(
            f"loaded: {what} with {busy(n)} running beside it; "
            + ("loaded = its median ratio, " if results.quiet else "")
            + "worst = its slowest round's ratio (rounds paired by their interleaving; "
            f"target <= {LOADED_WORST_ROUND_TARGET:.2f} for every row)."
        )
    if results.has_cold:
        lines.append(
            "cold (5a, 5b): the first payload call of a fresh interpreter whose pool was "
            "warmed up with small tasks only; the times shown are the calls after it (warm). "
            "Start-up (6) and whole-script (10) rows are cold by nature."
        )
    if has_script:
        lines.append(
            "10: the whole short script (ferropool or multiprocessing imported as mp; "
            "Pool(2), map of 100 squares) run as a process, wall time from outside."
        )
    if any(p.row.compares_to_stdlib for p in results.rows()):
        lines.append(
            "stdlib = multiprocessing.Pool, or concurrent.futures.ProcessPoolExecutor for "
            "8a/8b. loky and pebble are executors: apply = submit().result(), default "
            "chunksize = the Pool's rule."
        )
    lines += remote_lines(results, meta["processes"])
    for note in notes(results):
        lines.append(f"note: {note}")
    return lines


# ---------------------------------------------------------------------------
# The progress bar (one line on stderr).


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr, enabled: bool = True) -> None:
        self.total, self.stream, self.enabled = max(1, total), stream, enabled
        self.count = 0
        self.t0 = time.perf_counter()
        self.tty = enabled and stream.isatty()

    def step(self, label: str) -> None:
        if not self.enabled:
            return
        self.count += 1
        elapsed = time.perf_counter() - self.t0
        head = f"[{self.count}/{self.total}] {elapsed:5.0f}s "
        if self.tty:
            cols = shutil.get_terminal_size((100, 20)).columns
            width = 24
            filled = int(width * (self.count - 1) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            line = f"{bar} {head}{label}"[: cols - 1]
            self.stream.write("\r" + line.ljust(cols - 1))
        else:
            self.stream.write(f"{head}{label}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.tty:
            cols = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + " " * (cols - 1) + "\r")
            self.stream.flush()
