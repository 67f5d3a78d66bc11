"""Harvested campaigns of a run, by configuration (harvested.py has the loop): what `tinyexit powerfail
--harvester` and benchmarks/harvested.py run, one configuration per call so that each can be a Ray task.

A configuration is a name: a checkpoint granularity of the run's exit-head pipeline (`none`, `layer`,
`layers:N`, `jit` when the runtime has just-in-time checkpoints), or `branch[:WARN][/GRANULARITY][+T[:LOW]]`
(RUN/branch's energy-adaptive shared exit branch, the low-energy warning as its signal; WARN its level, default the
board file's; its checkpoints per layer unless GRANULARITY is none or layers:N; +T: confidence mode, the branch
answers at the first point whose int8 score reaches T, and with :LOW low energy answers only at a point whose score
reaches LOW, else at the next point whatever the scores); `NAME@BOARD` runs it on another board file (e.g.
`layer@nrf52840-fram`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tinyexit.errors import TinyexitError
from tinyexit.intermittent.harvested import Config, branch_setup, exit_heads_setup, run_harvested
from tinyexit.intermittent.nvm_events import flash_lifetime
from tinyexit.pipeline import Granularity


@dataclass(frozen=True)
class Task:
    """One configuration of a comparison (the `index` makes it a fanout shard)."""
    index: int
    config: str


def parse_config(name: str) -> tuple[Config, str | None]:
    """'layer', 'layers:4', 'none', 'jit', or the shared branch 'branch[:WARN][/GRANULARITY][+T[:LOW]]' (e.g.
    'branch', 'branch:2.0V', 'branch/none', 'branch+99:60': its warning level, default the board file's; its
    checkpoints, default per layer; its confidence thresholds), optionally '@BOARD' -> (Config, board or None)."""
    from tinyexit.units import parse_quantity
    text, _, board = name.strip().partition("@")
    if text == "branch" or text.startswith(("branch:", "branch/", "branch+")):
        from tinyexit.intermittent.branch_checks import Threshold
        text, plus, thr = text.partition("+")
        threshold = Threshold.parse(thr) if plus else None
        head, _, gran = text.partition("/")
        warn = head.partition(":")[2]
        try:
            g = Granularity.parse(gran) if gran else Granularity()
        except TinyexitError:
            raise TinyexitError(f"configuration {name!r}: the branch's granularity {gran!r} is none, layer or "
                                f"layers:N") from None
        if g.mode == "units":
            raise TinyexitError(f"configuration {name!r}: the branch takes none, layer or layers:N checkpoints")
        return Config(name, g, "low_energy",
                      parse_quantity(warn, "V", what=f"configuration {name!r}: the warning level") if warn else None,
                      threshold), board or None
    try:
        g = Granularity.parse(text)
    except TinyexitError:
        raise TinyexitError(f"configuration {name!r}: use none, layer, layers:N, units:N, jit or "
                            f"branch[:WARN][/GRANULARITY] (optionally @BOARD)") from None
    return Config(name, g, "warn" if str(g).startswith("jit") else None), board or None


def jit_available() -> bool:
    """Whether this runtime has just-in-time checkpoints (the 'jit' granularity)."""
    try:
        Granularity.parse("jit")
        return True
    except TinyexitError:
        return False


def run_config(run_dir, out_dir, *, config: str, board: str = "nrf52840", harvester: str = "rf",
               capacitor_f: float | None = None, num_inputs: int = 8, inferences: int | None = None,
               seconds: float | None = None, seed: int = 0, plot: bool = True, progress: bool = True,
               max_boots_per_inference: int = 100, nvm_region: int | str | None = None,
               slots: int | str | None = None, threshold: int | None = None) -> dict:
    """One configuration's harvested campaign on the emulated board: its report as a dict (+ 'png' and 'wall_s').
    `nvm_region` (bytes or "max"; exit-head pipelines): the records go to a log over that much of the flash
    (slots "fit" unless `slots` says otherwise); `slots`: checkpoint slots in a ring (default 2). `threshold`
    (the shared branch): confidence mode, branch_checks.Threshold (with low energy's own threshold, T:LOW)."""
    from tqdm import tqdm

    from tinyexit.boards import load_board
    from tinyexit.intermittent.energy import EnergyModel
    from tinyexit.intermittent.harvest import parse_harvester
    cfg, on = parse_config(config)
    b = load_board(on or board, emulate=True)
    EnergyModel.from_board(b, capacitor_f=capacitor_f, warn_v=cfg.warn_v)    # checked before the build
    trace = parse_harvester(harvester)
    # the branch's thresholds: its configuration's own (branch+T[:LOW]), else the one given; the exit heads' policy
    # is the run's
    threshold = (threshold if cfg.threshold is None else cfg.threshold) if cfg.signal == "low_energy" else None
    name = config if cfg.threshold is not None or threshold is None else f"{config}+{threshold}"
    # the threshold's sign and colon kept apart ('branch+12:7' and 'branch+127' must not share a folder)
    work = Path(out_dir) / ("harvest-" + name.replace("+", "-t").replace(":", "_").replace("@", "-").replace("/", "-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    if cfg.signal == "low_energy":
        if nvm_region is not None or slots is not None:
            raise TinyexitError(f"configuration {config!r}: the shared branch keeps its two slots; an NVM region "
                                f"and slots are for the exit-head pipelines")
        setup = branch_setup(run_dir, work, b, num_inputs=num_inputs, seed=seed, threshold=threshold)
    else:
        setup = exit_heads_setup(run_dir, work, b, num_inputs=num_inputs, seed=seed, nvm_region=nvm_region,
                                 slots=slots or ("fit" if nvm_region is not None else 2))
    # compute time from the plugin's cycle estimate (its cycles per instruction over the uninterrupted runs)
    model = EnergyModel.from_board(b, capacitor_f=capacitor_f, warn_v=cfg.warn_v,
                                   cycles_per_instruction=setup.cycles_per_instruction)
    bar = tqdm(total=inferences, desc=f"{config} under {trace.name}", unit="inference", disable=not progress,
               leave=False)
    rep, camp = run_harvested(setup.board, model, trace, cfg, num_inputs=num_inputs, expected=setup.expected,
                              labels=setup.labels, inferences=inferences, seconds=seconds,
                              max_boots_per_inference=max_boots_per_inference, progress=lambda r: bar.update())
    bar.close()
    from tinyexit.intermittent.harvested import Job, continuous
    rep.flash_lifetime_years_at_1hz = flash_lifetime(setup.board.t, rep.inferences)
    # continuous power in steady state: uninterrupted inferences from a blank NVM, the first two left out (a
    # runtime may skip erasing pages that are still blank), the next two averaged
    setup.board.t.erase_nvm()
    runs = [continuous(model, setup.board.probe(Job(k % num_inputs, 0x7E000000 + k, cfg.granularity)))
            for k in range(4)][2:]
    rep.continuous = {k: sum(r[k] for r in runs) / len(runs) for k in ("seconds", "energy_j", "instructions",
                                                                          "flash_erases")}
    rep.continuous["inferences_per_mj"] = 1e-3 / rep.continuous["energy_j"] if rep.continuous["energy_j"] else None
    rep.continuous["accuracy"] = setup.continuous_accuracy(rep.inferences)
    d = rep.as_dict()
    d.update(board=b.name, wall_s=time.monotonic() - t0, reference_checked=setup.reference_checked,
             threshold=None if threshold is None else str(threshold),
             nvm_region_bytes=setup.board.t.nvm_size,
             trace=trace.name, capacitor_f=model.capacitor_f, cycles_per_instruction=model.cycles_per_instruction,
             warn_v=model.warn_v)
    if plot:
        from tinyexit.intermittent.energy_plot import plot_campaign
        png = work / "voltage.png"
        plot_campaign(camp, model, trace, png, title=f"{config} on {b.name}: {rep.line()}"[:150])
        d["png"] = str(png)
    d["series"] = _series(camp)
    return d


def _series(camp, max_points: int = 20000) -> dict:
    """The campaign's voltage over time (thinned to max_points) and its marks, for the comparison's figure."""
    t, v = camp.series()
    step = max(1, len(t) // max_points)
    boots = camp.boots
    marks = {"cut": [b.cut_t for b in boots if b.cut], "warning": [b.warn_t for b in boots if b.warn_t is not None]}
    for b in boots:
        for label, _, mt, _ in b.marks:
            marks.setdefault(label, []).append(mt)
    return {"t": t[::step], "v": v[::step], "marks": marks}


def run_configs(run_dir, out_dir, configs: Sequence[str], *, workers: int | None = 1, address: str | None = None,
                **kwargs) -> list[dict]:
    """run_config for each configuration, as Ray tasks (fanout.run_shards) unless workers == 1."""
    import functools

    from tinyexit.intermittent import fanout
    for c in configs:
        parse_config(c)
    fn = functools.partial(_task, str(run_dir), str(out_dir), kwargs)
    return fanout.run_shards(fn, [Task(i, c) for i, c in enumerate(configs)], workers=workers, address=address,
                             desc="harvested configurations")


def _task(run_dir: str, out_dir: str, kwargs: dict, task: Task) -> dict:
    return run_config(run_dir, out_dir, config=task.config, progress=False, **kwargs)


def plot_comparison(results: Sequence[dict], path, title: str = "", first_results: int = 5) -> Path:
    """Stacked panels of capacitor voltage over time per configuration (cuts, checkpoint commits, results
    marked; each up to its `first_results`-th result, so that boots stay visible) and a bar chart of inferences
    per harvested mJ (with continuous power's figure as a tick)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinyexit.io import save_figure
    n = len(results)
    fig, axes = plt.subplots(n + 1, 1, figsize=(11, 2.0 * n + 3), gridspec_kw={"height_ratios": [2] * n + [3]})
    style = {"cut": ("tab:red", "x"), "commit": ("tab:blue", "."), "result": ("tab:green", "*"),
             "warning": ("tab:orange", "v")}
    for ax, r in zip(axes, results):
        s = r["series"]
        ax.plot(s["t"], s["v"], color="black", lw=0.6)
        lo, hi = (min(s["v"]), max(s["v"])) if s["v"] else (0, 1)
        for k, (color, marker) in style.items():
            xs = s["marks"].get(k, [])
            y = {"cut": lo, "result": hi, "commit": (lo + hi) / 2, "warning": (2 * lo + hi) / 3}[k]
            if xs:
                ax.scatter(xs, [y] * len(xs), color=color, marker=marker, s=14, zorder=3, label=f"{k} ({len(xs)})")
        ax.set_ylabel("V")
        done = sorted(s["marks"].get("result", []))
        if len(done) > first_results:
            ax.set_xlim(0, done[first_results - 1] * 1.03)
        ax.set_title(f"{r['config']} ({r['board']}): {r['inferences']} inferences in {r['seconds']:.4g} s, "
                     f"{r['cuts']} cuts, {r['inferences_per_mj']:.3g} / harvested mJ"
                     + (f" (shown: the first {first_results} results)" if len(done) > first_results else ""),
                     fontsize=8)
        ax.legend(loc="upper right", fontsize=6, ncol=5)
    axes[n - 1].set_xlabel("time [s]")
    ax = axes[n]
    names = [r["config"] for r in results]
    ax.bar(names, [r["inferences_per_mj"] for r in results], color="tab:olive", label="harvested")
    ax.scatter(names, [(r["continuous"] or {}).get("inferences_per_mj") or 0 for r in results], color="black",
               marker="_", s=400, label="continuous power")
    ax.set_ylabel("inferences / mJ")
    ax.set_yscale("log")
    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    save_figure(fig, path)
    return Path(path)


def table(results: Sequence[dict]) -> str:
    """The comparison as text, one row per configuration ('cont.': on continuous power, the same inputs)."""
    head = (f"{'configuration':<22}{'inf':>5}{'inf/mJ':>9}{'cont.':>8}{'lat med':>9}{'p90':>8}{'max':>8}"
            f"{'acc %':>7}{'cont.':>6}{'cuts':>6}{'erases/inf':>11}{'wrong':>6}  exits")
    rows = [head]
    for r in results:
        lat, acc = r["latency_s"], r["accuracy"]
        cacc = (r["continuous"] or {}).get("accuracy")
        f = (lambda x: "-" if x is None else f"{x:.3g}")
        rows.append(f"{r['config']:<22}{r['inferences']:>5}{r['inferences_per_mj']:>9.3g}"
                    f"{f((r['continuous'] or {}).get('inferences_per_mj')):>8}{f(lat['median']):>9}"
                    f"{f(lat['p90']):>8}{f(lat['max']):>8}{'-' if acc is None else f'{100 * acc:.1f}':>7}"
                    f"{'-' if cacc is None else f'{100 * cacc:.0f}':>6}"
                    f"{r['cuts']:>6}{f(r['flash_erases_per_inference']):>11}{r['wrong']:>6}  "
                    + " ".join(f"{k}:{v}" for k, v in sorted(r["exits"].items()))
                    + (f"  [stopped: {r['stopped'][:60]}]" if r["stopped"] else ""))
    return "\n".join(rows)
