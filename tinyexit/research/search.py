"""Exit placement search (NACHOS-like, small): where to put one early exit and how wide its head should be.

For every candidate exit point (`tinyexit.research.graph.candidate_points`) x head width, a head is trained briefly
on the frozen backbone's activations, and on the validation split the search computes: the exit's accuracy,
the MACs to the exit, and, under the max-softmax policy (exit when the top probability >= t), the threshold
with the lowest expected MACs whose overall accuracy meets the target:
    expected MACs = r * MACs(to exit) + (1 - r) * (MACs(full) + MACs(head)),   r = exit rate at t.
Flash (int8 weights of backbone + head, as the code generator stores them: int8 kernels, int32 biases, a
multiplier and shift per output channel; plus an allowance for code) and RAM (the largest set of live int8
activations while any piece runs: segment to the exit, the head, segment after it) are estimated and checked
against the board's budget; designs that do not fit are excluded with the reason. The Pareto front of
accuracy vs expected MACs is reported (JSON + PNG), and the design with the lowest expected MACs at the target
is chosen. `tinyexit.research.search_verify.verify` then builds that design for real (attach + train via
augment, quantize to int8, int8 threshold chosen on validation, measured on test, C generated for flash and
RAM) and puts predicted next to measured figures.

Public API:
    search(source, board=..., accuracy_target=..., out=DIR, ...) -> report dict (writes search.json, search.png)
    operating_points(score, exit_pred, final_pred, y, exit_macs, full_macs) -> curve over thresholds
    pareto_front(points) -> indices of the non-dominated (accuracy up, MACs down) points
    estimate_weight_bytes(layers) / peak_activation_bytes(...)
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.io import save_figure, write_json
from tinyexit.research.augment import (HeadConfig, HeadTrainConfig, _Features, data_recipe, load_keras,
                                       split_from_recipe, train_head)
from tinyexit.research.graph import (FUSED_INTO_PRODUCER, IDENTITY_AT_INFERENCE, _Graph, backbone_model,
                                     candidate_points)

DEFAULT_WIDTHS = (8, 16, 32)
DEFAULT_CODE_BYTES = 8 * 1024       # allowance for kernels + runtime before the C is generated (verify measures it)
ALIAS_LAYERS = FUSED_INTO_PRODUCER + IDENTITY_AT_INFERENCE + ("Flatten", "Reshape", "InputLayer")


@dataclass(frozen=True)
class Budget:
    flash_bytes: int
    ram_bytes: int
    source: str

    @classmethod
    def of_board(cls, board) -> "Budget":
        return cls(board.code_flash.size, board.ram.size - board.stack_size,
                   f"{board.name}: code flash {board.code_flash.size:,} B, RAM {board.ram.size:,} B - "
                   f"stack {board.stack_size:,} B")


# ---------------------------------------------------------------------------------------------- estimates

def _weight_bytes(layer) -> int:
    """int8 bytes the code generator stores for one layer after conversion (batch norm folded in)."""
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        cout = int(layer.output.shape[-1])
        return int(np.prod(layer.kernel.shape)) + cout * (4 + 4 + 1)
    if isinstance(layer, keras.layers.Conv2D):
        cout = int(layer.filters)
        return int(np.prod(layer.kernel.shape)) + cout * (4 + 4 + 1)
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod(layer.kernel.shape)) + int(layer.units) * (4 + 4 + 1)   # converted per channel
    return 0


def estimate_weight_bytes(layers) -> int:
    return int(sum(_weight_bytes(lay) for lay in layers))


def _nbytes(t) -> int:
    return int(math.prod(int(v) for v in t.shape[1:]))


def peak_activation_bytes(g: _Graph, layer_types: dict[str, str], members: Sequence[str], start: str,
                          end: str) -> int:
    """Largest sum of live int8 activations while the piece `members` (topological order, from the tensor of
    layer `start` to that of `end`) runs. Batch norm, activations, dropout, flatten and reshape share their
    input's buffer (fused or free after conversion)."""
    buf = {start: start}
    for n in members:
        prods = [p for p in g.producers.get(n, []) if p in buf]
        buf[n] = buf[prods[0]] if layer_types[n] in ALIAS_LAYERS and len(prods) == 1 else n
    steps = [n for n in members if buf[n] == n]
    pos = {n: i for i, n in enumerate(steps)}
    last = {buf[end]: len(steps)}
    for n in members:
        if buf[n] != n:
            continue            # an alias uses its input through its own consumers
        for p in g.producers.get(n, []):
            if p in buf:
                b = buf[p]
                last[b] = max(last.get(b, -1), pos[n])
    size = {b: _nbytes(g.tensor[b]) for b in set(buf.values())}
    peak = size[buf[start]]
    for i, n in enumerate(steps):
        live = {b for b in set(buf.values()) if (b == buf[start] or pos.get(b, len(steps)) <= i) and last.get(b, -1) >= i}
        live.add(n)
        peak = max(peak, sum(size[b] for b in live))
    return int(peak)


def _topo(g: _Graph, names: set[str], order: list[str]) -> list[str]:
    return [n for n in order if n in names]


# ---------------------------------------------------------------------------------------------- policy curve

def operating_points(score: np.ndarray, exit_pred: np.ndarray, final_pred: np.ndarray, y: np.ndarray,
                     exit_macs: float, full_macs: float) -> dict:
    """Every distinct decision of the rule "exit when score >= t": thresholds from "never" (inf) down to the
    lowest score, with the overall accuracy, exit rate and expected MACs at each."""
    score = np.asarray(score, np.float64)
    order = np.argsort(-score, kind="stable")
    s = score[order]
    ok_exit = (np.asarray(exit_pred) == y)[order].astype(np.int64)
    ok_final = (np.asarray(final_pred) == y)[order].astype(np.int64)
    n = len(y)
    # exiting the first k (highest scores): k takes every value where the score changes, plus n
    ks = np.concatenate([[0], np.nonzero(np.diff(s))[0] + 1, [n]]) if n else np.array([0])
    ks = np.unique(ks)
    ce = np.concatenate([[0], np.cumsum(ok_exit)])
    cf = np.concatenate([[0], np.cumsum(ok_final)])
    acc = (ce[ks] + (cf[n] - cf[ks])) / max(n, 1)
    rate = ks / max(n, 1)
    thr = np.array([np.inf] + [s[k - 1] for k in ks[1:]])
    return {"threshold": thr, "accuracy": acc, "exit_rate": rate,
            "expected_macs": rate * exit_macs + (1 - rate) * full_macs}


def pick_threshold(curve: dict, target: float) -> int | None:
    """Index of the operating point with the lowest expected MACs whose accuracy >= target (None: none)."""
    ok = np.nonzero(curve["accuracy"] >= target - 1e-12)[0]
    if not len(ok):
        return None
    return int(ok[np.argmin(curve["expected_macs"][ok])])


def pareto_front(acc: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of points not dominated by another (higher-or-equal accuracy at lower-or-equal cost, one of
    them strictly), sorted by cost."""
    acc, cost = np.asarray(acc, np.float64), np.asarray(cost, np.float64)
    order = np.lexsort((-acc, cost))
    front, best = [], -np.inf
    for i in order:
        if acc[i] > best:
            front.append(int(i))
            best = acc[i]
    return np.array(front, np.int64)


# ---------------------------------------------------------------------------------------------- the search

@dataclass(frozen=True)
class SearchConfig:
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    kind: str = "auto"
    max_points: int | None = 6          # candidate points kept, spread evenly by MACs (None: all)
    min_macs_fraction: float = 0.05     # skip points before this fraction of the backbone's MACs
    max_macs_fraction: float = 0.9      # and after this one (an exit there saves nothing)
    epochs: int = 5
    batch_size: int = 100
    max_train: int | None = None        # subsample the training split (speed)
    code_bytes: int = DEFAULT_CODE_BYTES
    seed: int = 0


def _source(source, task, data, from_run):
    p = Path(source) if isinstance(source, (str, Path)) else None
    if from_run is None and task is None and p is not None and p.is_dir():
        from_run = p
    original, path = load_keras(source)
    return original, path, data_recipe(task=task, data=data, from_run=from_run), from_run


def _spread(cands: list[dict], k: int | None) -> list[dict]:
    """At most k candidates, spread evenly over the MACs to the exit point (nearest to k evenly spaced levels)."""
    if k is None or len(cands) <= k:
        return cands
    macs = np.array([c["macs_to_point"] for c in cands], np.float64)
    keep: list[int] = []
    for level in np.linspace(macs.min(), macs.max(), k):
        free = [i for i in range(len(cands)) if i not in keep]
        keep.append(min(free, key=lambda i: (abs(macs[i] - level), i)))
    return [cands[i] for i in sorted(keep)]


@dataclass
class _Context:
    """What every candidate point's designs need: the backbone, its graph, the splits and the target. Built once
    in this process, or once per Ray worker (_worker_context) from the same `_Spec`."""
    base: object
    g: _Graph
    order: list
    types: dict
    input_name: str
    final_name: str
    num_classes: int
    x: np.ndarray
    y: np.ndarray
    xv: np.ndarray
    yv: np.ndarray
    final_pred: np.ndarray
    final_acc: float
    full_macs: int
    backbone_weights: int
    backbone_ram: int


@dataclass(frozen=True)
class _Spec:
    """How to build a _Context anywhere: the source as a path, the data, the config."""
    source: str
    task: str | None
    data: str | None
    from_run: str | None
    config: SearchConfig


@dataclass(frozen=True)
class _PointJob:
    index: int
    candidate: dict
    target: float


def _context(original, meta, classes, config: SearchConfig) -> _Context:
    from tinyexit.models import layer_macs
    from tinyexit.train import cap_examples

    base = backbone_model(original)
    num_classes = int(base.outputs[0].shape[-1])
    if num_classes != len(classes):
        raise TinyexitError(f"the model outputs {num_classes} values but the data has {len(classes)} classes")
    g = _Graph(base.outputs[0])
    order = [lay.name for lay in base.layers if lay.name in g.tensor]
    for n in g.input_names:
        if n not in order:
            order.insert(0, n)
    types = {n: type(op).__name__ for n, t in g.tensor.items() for op in [t._keras_history.operation]}
    final_name = base.outputs[0]._keras_history.operation.name
    input_name = next(iter(g.input_names))
    layers = [n for n in order if n not in g.input_names]
    x, y = split_from_recipe(meta, "train")
    xv, yv = split_from_recipe(meta, "validation")
    x, y = cap_examples(x, y, config.max_train, config.seed)
    final_pred = np.argmax(base.predict(xv, batch_size=256, verbose=0), -1)
    return _Context(base, g, order, types, input_name, final_name, num_classes, x, y, xv, yv, final_pred,
                    float(np.mean(final_pred == yv)), int(sum(layer_macs(base.get_layer(n)) for n in layers)),
                    estimate_weight_bytes(base.get_layer(n) for n in layers),
                    peak_activation_bytes(g, types, layers, input_name, final_name))


_WORKER: dict = {}      # a Ray worker's context, built on its first job and kept for the next ones


def _worker_context(spec: _Spec) -> _Context:
    if _WORKER.get("spec") != spec:
        from tinyexit import logs
        logs.install()        # a Ray worker is a fresh process: quiet TensorFlow there too
        original, _, (meta, classes, _), _ = _source(spec.source, spec.task, spec.data, spec.from_run)
        _WORKER.update(spec=spec, ctx=_context(original, meta, classes, spec.config))
    return _WORKER["ctx"]


def _point_on_worker(spec: _Spec, job: _PointJob) -> list[tuple[dict, dict | None]]:
    return _point_designs(_worker_context(spec), job.candidate, spec.config, job.target)


def _point_designs(ctx: _Context, c: dict, config: SearchConfig, target: float) -> list[tuple[dict, dict | None]]:
    """The designs (exit point `c` x each head width) with their policy curves (None for an excluded width)."""
    import keras

    from tinyexit.models import layer_macs

    g, types, order = ctx.g, ctx.types, ctx.order
    tc = HeadTrainConfig(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed)
    p = c["point"]
    f_tr, f_va = _Features(ctx.base, p, ctx.x), _Features(ctx.base, p, ctx.xv)
    seg0 = _topo(g, g.ancestors(p) - g.input_names, order)
    seg1 = _topo(g, g.ancestors(ctx.final_name) - g.ancestors(p), order)
    ram_segs = max(peak_activation_bytes(g, types, seg0, ctx.input_name, p),
                   peak_activation_bytes(g, types, seg1, p, ctx.final_name))
    channels = c["shape"][-1]
    out: list[tuple[dict, dict | None]] = []
    for w in config.widths:
        cfg = HeadConfig(w, config.kind)
        name = f"{p}@{w}"
        try:
            rcfg = cfg.resolved(channels)
        except TinyexitError as e:
            out.append(({"name": name, "point": p, "width": w, "kind": config.kind, "excluded": str(e)}, None))
            continue
        head, _ = train_head(f_tr, f_va, ctx.y, ctx.yv, "exit1", cfg, ctx.num_classes, tc)
        hg = _Graph(head.outputs[0])
        horder = [lay.name for lay in head.layers if lay.name in hg.tensor and lay.name not in hg.input_names]
        htypes = {n: type(t._keras_history.operation).__name__ for n, t in hg.tensor.items()}
        head_macs = int(sum(layer_macs(head.get_layer(n)) for n in horder))
        head_weights = estimate_weight_bytes(head.get_layer(n) for n in horder)
        head_ram = peak_activation_bytes(hg, htypes, horder, next(iter(hg.input_names)), "exit1")
        probs = head.predict(f_va.cached if f_va.cached is not None else f_va.dataset(ctx.yv, 256, False)[0],
                             verbose=0)[0]
        exit_pred = np.argmax(probs, -1)
        m_exit, m_full = c["macs_to_point"] + head_macs, ctx.full_macs + head_macs
        curve = operating_points(probs.max(-1), exit_pred, ctx.final_pred, ctx.yv, m_exit, m_full)
        j = pick_threshold(curve, target)
        d = {"name": name, "point": p, "width": w, "kind": rcfg.kind, "point_shape": c["shape"],
             "exit_accuracy": float(np.mean(exit_pred == ctx.yv)), "macs_to_exit": int(m_exit), "head_macs": head_macs,
             "full_macs": int(m_full), "weight_bytes": ctx.backbone_weights + head_weights,
             "flash_bytes": ctx.backbone_weights + head_weights + config.code_bytes,
             "ram_bytes": int(max(ram_segs, head_ram))}
        if j is None:
            d.update(threshold=None, exit_rate=None, accuracy=None, expected_macs=None,
                     excluded=f"accuracy target {target:.4f} not reached at any threshold (never exiting gives "
                              f"{ctx.final_acc:.4f})")
        else:
            d.update(threshold=float(curve["threshold"][j]), exit_rate=float(curve["exit_rate"][j]),
                     accuracy=float(curve["accuracy"][j]), expected_macs=float(curve["expected_macs"][j]))
        out.append((d, curve))
        keras.backend.clear_session()
    return out


def search(source, *, board: str | object = "nrf52840", accuracy_target: float | None = None,
           max_drop: float | None = None, out: str | Path, config: SearchConfig = SearchConfig(),
           task: str | None = None, data: str | Path | None = None, from_run: str | Path | None = None,
           budget: Budget | None = None, log: Callable[[str], None] = print, workers: int = 1,
           address: str | None = None) -> dict:
    """Search exit point x head width for one early exit on `source` (a run directory, whose exits are
    dropped, or a .keras model with task/data). The accuracy target is absolute (`accuracy_target`) or the
    backbone's validation accuracy minus `max_drop`. Writes `out`/search.json and `out`/search.png.
    workers > 1 or an `address`: each candidate point (its head widths) is a Ray task (tinyexit.parallel), on a
    local Ray with `workers` CPUs or the cluster at `address`; each worker loads the source and the data once."""
    from tinyexit.boards import load_board
    from tinyexit.parallel import run_jobs

    t0 = time.time()
    if (accuracy_target is None) == (max_drop is None):
        raise TinyexitError("give exactly one of --accuracy-target (absolute, e.g. 0.9) or --max-drop (e.g. 0.01)")
    fan_out = workers != 1 or address is not None
    if fan_out and not isinstance(source, (str, Path)):
        raise TinyexitError("a search on Ray workers needs the source as a path (a run or a .keras file): workers "
                            "load it themselves; or run with workers=1")
    if budget is None:
        budget = Budget.of_board(load_board(board) if isinstance(board, str) else board)
    original, path, (meta, classes, data_report), from_run = _source(source, task, data, from_run)
    ctx = _context(original, meta, classes, config)
    full_macs, final_acc = ctx.full_macs, ctx.final_acc
    cands = [c for c in candidate_points(ctx.base)
             if config.min_macs_fraction * full_macs <= c["macs_to_point"] <= config.max_macs_fraction * full_macs]
    cands = _spread(cands, config.max_points)
    if not cands:
        raise TinyexitError("no candidate exit point between "
                            f"{config.min_macs_fraction:.0%} and {config.max_macs_fraction:.0%} of the backbone's MACs")

    log(f"data: {data_report['source']}; {len(cands)} exit points x {len(config.widths)} widths; budget {budget.source}"
        + (f"; points on {'the Ray cluster at ' + address if address else f'{workers} Ray workers'}" if fan_out else ""))
    y, yv = ctx.y, ctx.yv
    target = float(accuracy_target) if accuracy_target is not None else final_acc - float(max_drop)
    log(f"backbone: {full_macs:,} MACs, validation accuracy {final_acc:.4f}; accuracy target {target:.4f}")

    designs = [{"name": "no_exit", "point": None, "width": None, "kind": None, "exit_accuracy": None,
                "macs_to_exit": full_macs, "head_macs": 0, "full_macs": full_macs,
                "flash_bytes": ctx.backbone_weights + config.code_bytes, "weight_bytes": ctx.backbone_weights,
                "ram_bytes": ctx.backbone_ram, "threshold": None, "exit_rate": 0.0, "accuracy": final_acc,
                "expected_macs": float(full_macs)}]
    curves = {"no_exit": {"accuracy": np.array([final_acc]), "expected_macs": np.array([float(full_macs)]),
                          "exit_rate": np.array([0.0]), "threshold": np.array([np.inf])}}
    done, total = 0, len(cands) * len(config.widths)

    def add(res: list[tuple[dict, dict | None]]) -> None:
        nonlocal done
        for d, curve in res:
            done += 1
            designs.append(d)
            if curve is None:
                continue
            curves[d["name"]] = curve
            log(f"  [{done}/{total}] {d['name']:<24} exit acc {d['exit_accuracy']:.3f}  MACs to exit "
                f"{d['macs_to_exit']:>10,}  " + (f"at target: exit rate {d['exit_rate']:.2f}, expected MACs "
                                                 f"{d['expected_macs']:>12,.0f}" if d["threshold"] is not None
                                                 else "target not reachable"))

    jobs = [_PointJob(k, c, target) for k, c in enumerate(cands)]
    if fan_out:
        spec = _Spec(str(path if path else source), task, None if data is None else str(data),
                     None if from_run is None else str(from_run), config)
        for res in run_jobs(partial(_point_on_worker, spec), jobs, workers=workers, address=address,
                            desc="search", unit="point"):
            add(res)
    else:
        for job in jobs:
            add(_point_designs(ctx, job.candidate, config, target))
    for d in designs:
        if d.get("excluded") or "flash_bytes" not in d:
            continue
        why = []
        if d["flash_bytes"] > budget.flash_bytes:
            why.append(f"flash {d['flash_bytes']:,} B (weights {d['weight_bytes']:,} + code allowance "
                       f"{config.code_bytes:,}) > {budget.flash_bytes:,} B")
        if d["ram_bytes"] > budget.ram_bytes:
            why.append(f"RAM {d['ram_bytes']:,} B of live activations > {budget.ram_bytes:,} B")
        if why:
            d["excluded"] = "does not fit: " + "; ".join(why)
    fitting = [d for d in designs if not d.get("excluded", "").startswith("does not fit") and "ram_bytes" in d
               and d["name"] in curves]
    # the Pareto front over every operating point of every fitting design
    pts = [(d["name"], k) for d in fitting for k in range(len(curves[d["name"]]["accuracy"]))]
    acc = np.array([curves[n]["accuracy"][k] for n, k in pts])
    cost = np.array([curves[n]["expected_macs"][k] for n, k in pts])
    front_idx = pareto_front(acc, cost)
    front = [{"design": pts[i][0], "threshold": _f(curves[pts[i][0]]["threshold"][pts[i][1]]),
              "accuracy": float(acc[i]), "expected_macs": float(cost[i]),
              "exit_rate": float(curves[pts[i][0]]["exit_rate"][pts[i][1]])} for i in front_idx]
    ok = [d for d in designs if not d.get("excluded")]
    if not ok:
        raise TinyexitError(f"no design fits {budget.source} and meets accuracy {target:.4f}; see the reasons "
                            f"in the designs, lower the target or pick a larger board")
    chosen = min(ok, key=lambda d: (d["expected_macs"], d["flash_bytes"]))
    report = {
        "source": str(path) if path else None, "from_run": str(from_run) if from_run else None,
        "data": meta, "data_source": data_report, "classes": list(classes),
        "budget": asdict(budget), "accuracy_target": target, "target_rule": (
            f"absolute {accuracy_target}" if accuracy_target is not None else f"backbone validation accuracy - {max_drop}"),
        "policy": "max_softmax (float, validation split)", "backbone": {
            "validation_accuracy": final_acc, "macs": full_macs, "weight_bytes": ctx.backbone_weights,
            "ram_bytes": ctx.backbone_ram},
        "config": asdict(config), "validation_examples": int(len(yv)), "train_examples": int(len(y)),
        "designs": designs, "pareto_front": front, "chosen": chosen["name"],
        "wall_time_s": round(time.time() - t0, 1), "plot": "search.png",
    }
    out = Path(out)
    _plot(out / "search.png", report, curves)
    write_json(out / "search.json", report)
    log(format_search(report))
    return report


def _f(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def format_search(rep: dict) -> str:
    lines = [f"{'design':<26} {'exit acc':>8} {'MACs to exit':>12} {'exit rate':>9} {'acc':>7} {'exp. MACs':>12} "
             f"{'flash':>9} {'RAM':>8}  note"]
    for d in rep["designs"]:
        def f(k, fmt):
            v = d.get(k)
            return format(v, fmt) if v is not None else "-"
        note = "CHOSEN" if d["name"] == rep["chosen"] else d.get("excluded", "")
        lines.append(f"{d['name']:<26} {f('exit_accuracy', '.3f'):>8} {f('macs_to_exit', ',d'):>12} "
                     f"{f('exit_rate', '.3f'):>9} {f('accuracy', '.4f'):>7} {f('expected_macs', ',.0f'):>12} "
                     f"{f('flash_bytes', ',d'):>9} {f('ram_bytes', ',d'):>8}  {note}")
    lines.append(f"accuracy target {rep['accuracy_target']:.4f} ({rep['target_rule']}); budget {rep['budget']['source']}; "
                 f"Pareto front: {len(rep['pareto_front'])} operating points")
    return "\n".join(lines)


def _plot(path: Path, rep: dict, curves: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    by_name = {d["name"]: d for d in rep["designs"]}
    for name, c in curves.items():
        d = by_name[name]
        misfit = d.get("excluded", "").startswith("does not fit")
        ax.plot(c["expected_macs"], c["accuracy"], ("o" if len(c["accuracy"]) == 1 else "") + (":" if misfit else "-"), lw=0.8, alpha=0.35 if misfit else 0.6,
                label=f"{name}{' (does not fit)' if misfit else ''}")
    fr = rep["pareto_front"]
    ax.plot([p["expected_macs"] for p in fr], [p["accuracy"] for p in fr], "k.-", lw=1.6, ms=4, label="Pareto front")
    ch = by_name[rep["chosen"]]
    ax.plot([ch["expected_macs"]], [ch["accuracy"]], "r*", ms=14, label=f"chosen: {ch['name']}")
    ax.axhline(rep["accuracy_target"], color="r", ls="--", lw=0.8, label="accuracy target")
    ax.set(xlabel="expected MACs per inference (validation)", ylabel="accuracy (validation)",
           title="exit placement search: accuracy vs expected MACs (max-softmax threshold sweep)")
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    save_figure(fig, path, dpi=110)
