"""The PNG chart (``draw_chart``, needs matplotlib): per row, ferropool's
time relative to the stdlib quiet, loaded (with its worst round) and cold
where the row has a cold figure, the peers' quiet ratios as markers, and the
targets."""

from __future__ import annotations

import importlib
import os
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from .report import busy
from .results import BenchResults, RowPhases, RowResult
from .workloads import LOADED_WORST_ROUND_TARGET

# Bar colours: ferropool's three figures, and the peers' markers.
PHASE_COLORS = {"quiet": "#e8590c", "loaded": "#862e9c", "cold": "#1c7ed6"}
PEER_COLORS = {
    "loky": "#748ffc",
    "billiard": "#94d82d",
    "pebble": "#da77f2",
    "mpire": "#3bc9db",
}
MET_COLOR, MISSED_COLOR = "#2b8a3e", "#c92a2a"


class Bar(NamedTuple):
    """One bar of a row: its figure, its rounds' ratios (the whisker), the
    target drawn on it, its label, whether its targets are met."""

    phase: str  # quiet | loaded | cold
    ratio: float
    spread: List[float]
    target: Optional[float]
    label: str
    met: Optional[bool]


def _bars(phases: RowPhases) -> List[Bar]:
    out = []
    row, quiet, loaded = phases.row, phases.quiet, phases.loaded
    if quiet is not None and quiet.ratio is not None:
        met = _met(quiet, ("ratio",))
        out.append(
            Bar("quiet", quiet.ratio, quiet.round_ratios, row.target, f"{quiet.ratio:.2f}", met)
        )
    if loaded is not None and loaded.ratio is not None:
        worst = loaded.worst_round_ratio
        label = f"loaded {loaded.ratio:.2f}" + ("" if worst is None else f", worst {worst:.2f}")
        met = _met(loaded, ("loaded worst round", "loaded median"))
        out.append(Bar("loaded", loaded.ratio, loaded.round_ratios, row.loaded_target, label, met))
    if quiet is not None and quiet.cold_ratio is not None:
        cold = quiet.cold_ratio
        met = _met(quiet, ("cold",))
        out.append(
            Bar("cold", cold, quiet.cold_round_ratios, row.cold_target, f"cold {cold:.2f}", met)
        )
    return out


def _met(rr: RowResult, names: Tuple[str, ...]) -> Optional[bool]:
    checks = [c for c in rr.checks() if c.name in names]
    return all(c.met for c in checks) if checks else None


def draw_chart(results: BenchResults, meta: Dict[str, Any], path: str) -> None:
    """A PNG bar chart of ferropool's time relative to the stdlib per row
    (log scale): quiet, loaded and cold bars, each with the range of its
    rounds' ratios; the targets marked; the peers' quiet ratios as dots."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")

    # ferropool / stdlib only (not rows 11, which compare ferropool.dask).
    rows = [p for p in results.rows() if p.row.compares_to_stdlib]
    shown = [(p, _bars(p)) for p in rows if p.row.kind != "efficiency"]
    shown = [(p, bars) for p, bars in shown if bars]
    eff = next((p.main for p in results.rows() if p.row.kind == "efficiency"), None)
    slots = max((len(bars) for _, bars in shown), default=1)
    bar_h = 0.8 / slots
    n = len(shown)
    fig, ax = plt.subplots(figsize=(12, (0.28 * slots + 0.3) * n + 2.4))
    values = [1.0]
    peers = [i for i in meta["implementations"] if i not in ("ferropool", "stdlib")]
    drawn_phases, drawn_peers = set(), set()
    for i, (phases, bars) in enumerate(shown):
        top = i - bar_h * len(bars) / 2
        for j, bar in enumerate(bars):
            y = top + bar_h * (j + 0.5)
            first = bar.phase not in drawn_phases
            drawn_phases.add(bar.phase)
            ax.barh(
                [y],
                [bar.ratio],
                height=bar_h * 0.9,
                color=PHASE_COLORS[bar.phase],
                alpha=0.95 if bar.phase == "quiet" else 0.8,
                label=f"ferropool, {bar.phase}" if first else None,
                zorder=2,
            )
            values.append(bar.ratio)
            if len(bar.spread) > 1:
                lo, hi = min(bar.spread), max(bar.spread)
                ax.plot([lo, hi], [y, y], color="black", lw=0.9, zorder=3)
                ax.plot([hi], [y], marker="|", color="black", ms=7, zorder=3)
                values += [lo, hi]
            if bar.target is not None:
                half = bar_h * 0.5
                ax.plot([bar.target] * 2, [y - half, y + half], color="black", lw=2.4, zorder=4)
                values.append(bar.target)
            end = max([bar.ratio, bar.target or 0.0, *bar.spread])
            ax.annotate(
                bar.label,
                (end, y),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize=7.5,
                fontweight="bold" if bar.phase == "quiet" else "normal",
                color="#495057" if bar.met is None else (MET_COLOR if bar.met else MISSED_COLOR),
                zorder=5,
            )
        quiet = phases.quiet
        if quiet is not None and bars[0].phase == "quiet":
            y = top + bar_h * 0.5
            std = quiet.value("stdlib")
            for peer in peers:
                v = quiet.value(peer)
                if v is None or not std:
                    continue
                ax.plot(
                    [v / std],
                    [y],
                    marker="o",
                    ms=4.5,
                    ls="none",
                    color=PEER_COLORS.get(peer, "gray"),
                    markeredgecolor="black",
                    markeredgewidth=0.4,
                    label=f"{peer} (peer, quiet)" if peer not in drawn_peers else None,
                    zorder=4,
                )
                drawn_peers.add(peer)
                values.append(v / std)
    ax.plot([], [], color="black", lw=2.4, label="ferropool's target")
    ax.plot([], [], color="black", lw=0.9, marker="|", label="range of the rounds' ratios")
    loaded_note = ""
    if results.loaded:
        loaded_note = f" = loaded worst-round target ({LOADED_WORST_ROUND_TARGET:g})"
    ax.axvline(1.0, color="#495057", ls="--", lw=1, label=f"stdlib = 1{loaded_note}", zorder=1)
    ax.set_xscale("log")
    lo, hi = min(values) / 1.5, max(values) * 4
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if lo <= t <= hi]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.minorticks_off()
    labels = []
    for phases, _ in shown:
        label = f"{phases.row.label} {phases.row.title}"
        if phases.row.kind == "cpu" and eff is not None and eff.value("ferropool") is not None:
            target = eff.row.target
            label += f"\n(ferropool at {100 * (eff.value('ferropool') or 0):.0f} % of "
            label += f"{meta['processes']}x serial"
            label += ")" if target is None else f"; target {100 * target:.0f} %)"
        labels.append(label)
    ax.set_yticks(range(n))
    ax.set_yticklabels(labels, fontsize=8.5)
    ax.set_ylim(max(n, 1) - 0.5, -0.5)  # (no row to draw: rows 11 only)
    ax.set_xlabel(
        "ferropool's time relative to the stdlib, medians of interleaved rounds "
        "(log scale; lower is better)\nlabels: green where the bar's targets are met"
    )
    ax.grid(axis="x", alpha=0.3, zorder=0)
    date = str(meta.get("date", ""))[:10]
    load = f"; loaded: {busy(results.load)} beside" if results.loaded else ""
    ax.set_title(
        f"ferropool vs the stdlib and peers: {meta['processes']} workers on "
        f"{meta['cpu_count']} CPUs, Python {meta['python']}, {meta['start_method']}, "
        f"{date}{load}",
        fontsize=10,
    )
    # Beside the axes: inside, it would hide the bars of the last rows.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, framealpha=0.95)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
