"""Reporting: the ratio table, its notes, the run's metadata, JSON out and
back in, the PNG chart, and the progress bar."""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO

from .adapters import versions
from .runner import Measurement, RowResult
from .workloads import Config, Row


def fmt_seconds(t: Optional[float]) -> str:
    if t is None:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1:
        return f"{t * 1e3:.3g} ms" if t >= 0.1 else f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def _cell(rr: RowResult, impl: str) -> str:
    m = rr.results.get(impl)
    if m is None:
        return "-"
    if m.error is not None:
        if m.error.startswith("n/a"):
            return "n/a"
        return "WRONG" if m.error == "wrong result" else "error"
    if rr.row.kind == "efficiency":
        return f"{100 * m.times[0]:.0f} %"
    return fmt_seconds(m.best)


def _target(row: Row) -> str:
    if row.target is None:
        return ""
    if row.kind == "efficiency":
        return f">= {100 * row.target:.0f} %"
    return f"<= {row.target:.2f}"


def table_lines(
    results: List[RowResult], impls: Sequence[str], markdown: bool = False
) -> List[str]:
    header = ["workload", *impls, "ratio", "target", "met"]
    body = []
    for rr in results:
        r = rr.ratio
        met = rr.met
        body.append(
            [
                f"{rr.row.label} {rr.row.title}",
                *(_cell(rr, impl) for impl in impls),
                "" if r is None else f"{r:.2f}",
                _target(rr.row),
                "" if met is None else ("yes" if met else "NO"),
            ]
        )
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


def notes(results: List[RowResult]) -> List[str]:
    """One line per n/a, error or wrong result, deduplicated."""
    seen: Dict[str, List[str]] = {}
    for rr in results:
        if rr.row.kind == "efficiency":
            continue
        for impl, m in rr.results.items():
            if m.error is not None:
                seen.setdefault(f"{impl}: {m.error}", []).append(rr.row.label)
    return [f"{msg} (workload {', '.join(dict.fromkeys(labels))})" for msg, labels in seen.items()]


def unmet(results: List[RowResult]) -> List[RowResult]:
    return [rr for rr in results if rr.met is False]


def summary_line(results: List[RowResult]) -> str:
    missing = unmet(results)
    if not missing:
        return "every target met"
    return "targets not met: " + "; ".join(f"{rr.row.label} {rr.row.title}" for rr in missing)


def metadata(cfg: Config, impls: Sequence[str]) -> Dict[str, Any]:
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
        "implementations": list(impls),
        "versions": versions(impls),
        "ferropool_source": _source_revision(),
    }


def _source_revision() -> Optional[str]:
    """The git commit ferropool was built from, when it runs from a checkout
    (an editable install); "+modified" when the working tree differs."""
    here = os.path.abspath(__file__)  # <root>/python/ferropool/bench/report.py
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(here))))
    if not os.path.isdir(os.path.join(root, ".git")):
        return None
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read only: no index refresh
    try:
        rev = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
        ).stdout.strip()
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


def to_json(results: List[RowResult], meta: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "meta": meta,
        "rows": [
            {
                "key": rr.row.key,
                "label": rr.row.label,
                "title": rr.row.title,
                "kind": rr.row.kind,
                "target": rr.row.target,
                "method": rr.row.method,
                "first": rr.row.first,
                "n": rr.row.n,
                "ratio": rr.ratio,
                "met": rr.met,
                "results": {impl: m.to_json() for impl, m in rr.results.items()},
            }
            for rr in results
        ],
    }


def from_json(data: Dict[str, Any]) -> List[RowResult]:
    out = []
    for d in data["rows"]:
        row = Row(
            d["key"],
            d["label"],
            d["title"],
            d["kind"],
            d["target"],
            d.get("n", 0),
            d.get("method", ""),
            d.get("first", True),
        )
        res = {
            impl: Measurement(list(m.get("times") or []), m.get("error"))
            for impl, m in d["results"].items()
        }
        out.append(RowResult(row, res))
    return out


def report_lines(
    results: List[RowResult], meta: Dict[str, Any], markdown: bool = False
) -> List[str]:
    impls = meta["implementations"]
    lines = table_lines(results, impls, markdown)
    lines.append("")
    lines.append(
        f"ratio = ferropool / stdlib (same run, lower is better); best of {meta['repeats']} "
        "(peers: fewer once a row has taken them 4 s; 5a/5b: "
        f"{'' if meta.get('quick') else 'at least 5 rounds, '}"
        "each implementation in a fresh interpreter); "
        f"{meta['processes']} workers, start method {meta['start_method']!r} "
        "(start-up rows: the method named)"
        + (
            f"; {meta['load']} CPU-bound processes running beside every row."
            if meta.get("load")
            else "."
        )
    )
    lines.append(
        "stdlib = multiprocessing.Pool, or concurrent.futures.ProcessPoolExecutor for 8a/8b. "
        "loky and pebble are executors: apply = submit().result(), default chunksize = "
        "the Pool's rule."
    )
    for n in notes(results):
        lines.append(f"note: {n}")
    return lines


def draw_chart(results: List[RowResult], meta: Dict[str, Any], path: str) -> None:
    """A PNG bar chart of each implementation's time relative to the stdlib,
    per workload (log scale), with ferropool's targets marked."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")

    shown = [rr for rr in results if rr.row.kind != "efficiency" and rr.ratio is not None]
    eff = next((rr for rr in results if rr.row.kind == "efficiency"), None)
    impls = [i for i in meta["implementations"] if i != "stdlib"]
    colors = {
        "ferropool": "#e8590c",
        "loky": "#748ffc",
        "billiard": "#94d82d",
        "pebble": "#da77f2",
        "mpire": "#3bc9db",
    }
    n = len(shown)
    bar_h = 0.8 / max(1, len(impls))
    fig, ax = plt.subplots(figsize=(11, 0.55 * n + 2.2))
    ratios = [1.0]
    for j, impl in enumerate(impls):
        ys, xs = [], []
        for i, rr in enumerate(shown):
            v, std = rr.value(impl), rr.value("stdlib")
            if v is not None and std:
                ys.append(i - 0.4 + bar_h * (j + 0.5))
                xs.append(v / std)
        ratios += xs
        ax.barh(
            ys,
            xs,
            height=bar_h * (0.95 if impl == "ferropool" else 0.8),
            color=colors.get(impl, "gray"),
            alpha=1.0 if impl == "ferropool" else 0.6,
            label=impl if impl == "ferropool" else f"{impl} (peer)",
            zorder=2,
        )
    for i, rr in enumerate(shown):
        ratio, target = rr.ratio, rr.row.target
        if target is not None:
            ax.plot([target] * 2, [i - 0.47, i + 0.47], color="black", lw=2.4, zorder=3)
        if ratio is not None:
            text = f"{ratio:.2f}" + ("" if target is None else f"  (target {target:.2f})")
            ax.annotate(
                text,
                (max(ratio, target or 0), i - 0.4 + bar_h * 0.5),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                fontweight="bold",
                color="#2b8a3e" if rr.met else "#c92a2a",
                zorder=4,
            )
    ax.plot([], [], color="black", lw=2.4, label="ferropool's target")
    ax.axvline(1.0, color="#495057", ls="--", lw=1, label="stdlib = 1", zorder=1)
    ax.set_xscale("log")
    ratios += [rr.row.target for rr in shown if rr.row.target is not None]
    lo, hi = min(ratios) / 1.5, max(ratios) * 3
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if lo <= t <= hi]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.minorticks_off()
    labels = []
    for rr in shown:
        label = f"{rr.row.label} {rr.row.title}"
        if rr.row.kind == "cpu" and eff is not None and eff.value("ferropool") is not None:
            label += f"\n(ferropool at {100 * (eff.value('ferropool') or 0):.0f} % of "
            label += f"{meta['processes']}x serial; target 90 %)"
        labels.append(label)
    ax.set_yticks(range(n))
    ax.set_yticklabels(labels, fontsize=8.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel(
        "time relative to the stdlib, same run (log scale; lower is better)\n"
        "labels: ferropool / stdlib, green where the target is met"
    )
    ax.grid(axis="x", alpha=0.3, zorder=0)
    date = str(meta.get("date", ""))[:10]
    ax.set_title(
        f"ferropool vs the stdlib and peers: {meta['processes']} workers on "
        f"{meta['cpu_count']} CPUs, Python {meta['python']}, {meta['start_method']}, {date}",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8, framealpha=0.95)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


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
