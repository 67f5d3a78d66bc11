"""The PNG of a campaign under harvested power: capacitor voltage over time with the turn-on, warning and
turn-off levels, the cuts, warnings, checkpoint commits and results marked; the harvester's power below."""
from __future__ import annotations

import os

import numpy as np

from tinyexit.intermittent.energy import Campaign, EnergyModel
from tinyexit.intermittent.harvest import Trace
from tinyexit.io import save_figure

MARK_STYLE = {"commit": ("tab:blue", "o", "checkpoint commit"), "result": ("tab:green", "*", "result")}


def harvest_profile(trace: Trace, t0: float, t1: float, max_steps: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """(edges, power) for a step plot of the trace over [t0, t1]: its own pieces when there are few, else the
    exact mean power over `max_steps` equal bins."""
    if t1 <= t0:
        return np.array([t0, t0]), np.array([trace.power(t0)])
    times, powers = [t0], []
    for _, b, p in trace.segments(t0, t1):
        times.append(b)
        powers.append(p)
        if len(powers) > max_steps:
            edges = np.linspace(t0, t1, max_steps + 1)
            mean = [trace.energy(a, b) / (b - a) for a, b in zip(edges[:-1], edges[1:])]
            return edges, np.asarray(mean)
    return np.asarray(times), np.asarray(powers)


def plot_campaign(campaign: Campaign, model: EnergyModel, trace: Trace, path: str | os.PathLike,
                  title: str | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, v = campaign.series()
    t0 = t[0] if t else 0.0
    t1 = max(t[-1] if t else t0, t0)
    fig, (ax, axp) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(t, v, color="black", lw=0.8, label="capacitor")
    for level, name, style in ((model.on_v, "on", "--"), (model.warn_v, "warn", ":"), (model.off_v, "off", "--")):
        if level is not None:
            ax.axhline(level, color="grey", ls=style, lw=0.7)
            ax.annotate(f"{name} {level:g} V", (1.0, level), xycoords=("axes fraction", "data"), fontsize=7,
                        color="grey", ha="right", va="bottom")
    boots = campaign.boots
    cuts = [(b.cut_t, model.off_v) for b in boots if b.cut]
    warns = [(b.warn_t, model.warn_v) for b in boots if b.warn_t is not None and model.warn_v is not None]
    for pts, color, marker, label in ((cuts, "tab:red", "x", "cut"), (warns, "tab:orange", "v", "low-energy warning")):
        if pts:
            ax.scatter(*zip(*pts), color=color, marker=marker, s=28, zorder=3, label=f"{label} ({len(pts)})")
    marks: dict[str, list] = {}
    for b in boots:
        for label, _, mt, mv in b.marks:
            marks.setdefault(label, []).append((mt, mv))
    for label, pts in marks.items():
        color, marker, name = MARK_STYLE.get(label, ("tab:purple", "d", label))
        ax.scatter(*zip(*pts), color=color, marker=marker, s=22, zorder=3, label=f"{name} ({len(pts)})")
    ax.set_ylabel("capacitor voltage [V]")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    s = campaign.summary()
    ax.set_title(title or (f"{trace.name}, {model.capacitor_f * 1e6:g} uF: {s['boots']} boots, {s['cuts']} cuts, "
                           f"{s['harvested_j'] * 1e3:.3g} mJ harvested"), fontsize=9)
    edges, power = harvest_profile(trace, t0, t1)
    axp.stairs(power * 1e3, edges, color="tab:olive", fill=True, alpha=0.6)
    axp.set_ylabel("harvest [mW]")
    axp.set_xlabel("time [s]")
    save_figure(fig, path)
