"""Shared exit branch (FreeML, docs/DESIGN.md 3): one classifier for every exit point, trained on a frozen backbone.

Float model. The pooled, normalised features of the exit points fill a fixed vector (`tinyexit.branch.vector`).
One Dense + softmax maps the vector to classes. Training samples one exit point per batch (the slices after it
zeroed), over pooled features precomputed once from the frozen backbone. int8: `tinyexit.branch.quantize`;
the report's plot and table: `tinyexit.branch.report`.

Public API:
    BranchConfig                              hyper-parameters of the stage
    fit_branch(...) / trecx_head(...) / train_heads(...)
    train_branch(run_dir, points=..., config=...) -> report; writes RUN/branch/ atomically
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tinyexit.branch.quantize import BranchInt8Chain, build_manifest, param_bytes, quantize_branch
from tinyexit.branch.report import plot_branch
from tinyexit.branch.vector import VectorLayout, check_points, feature_scales, normalise, pooled_features
from tinyexit.errors import TinyexitError
from tinyexit.io import atomic_path, write_bytes, write_json
from tinyexit.run import Run


@dataclass(frozen=True)
class BranchConfig:
    epochs: int = 40                  # shared branch, over precomputed pooled features (fast)
    batch_size: int = 100
    learning_rate: float = 5e-2       # Adam on one Dense layer (a convex problem) takes a large step
    head_epochs: int = 8              # separate T-RecX heads on the frozen backbone; 0: built and counted only
    head_learning_rate: float = 3e-3  # as `tinyexit train`
    head_channels: int = 32           # channels a separate head looks at (T-RecX: the first 32)
    num_calibration: int = 300        # training inputs used as representative data for int8
    num_eval: int | None = None       # test inputs evaluated (None = all)
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.num_calibration < 1 or self.head_epochs < 0:
            raise TinyexitError(f"invalid shared-branch settings {asdict(self)}: epochs, batch size and "
                                f"calibration count must be at least 1, head epochs at least 0")


# ---------------------------------------------------------------------------------------------------------
# Float training: the shared branch and, for comparison, separate heads
# ---------------------------------------------------------------------------------------------------------

def build_branch(vector_size: int, num_classes: int):
    import keras

    inp = keras.Input((vector_size,), name="shared_vector")
    logits = keras.layers.Dense(num_classes, name="shared_dense")(inp)
    return keras.Model(inp, keras.layers.Softmax(name="shared_softmax")(logits), name="shared_branch")


def branch_accuracy(branch, layout: VectorLayout, feats: Sequence[np.ndarray], y: np.ndarray) -> list[float]:
    """Float accuracy of the branch when inference stops at each point."""
    full = np.concatenate(feats, axis=1)
    out = []
    for k in range(len(layout.points)):
        p = branch.predict(full * layout.mask(k), batch_size=1024, verbose=0)
        out.append(float(np.mean(np.argmax(p, 1) == y)))
    return out


def fit_branch(layout: VectorLayout, train: tuple[Sequence[np.ndarray], np.ndarray],
               validation: tuple[Sequence[np.ndarray], np.ndarray], num_classes: int, cfg: BranchConfig,
               log: Callable[[str], None] = lambda s: None):
    """Train the branch on normalised pooled features: every batch stops at one exit point drawn uniformly
    (its later slices zeroed). Keeps the epoch with the best mean validation accuracy over the points.
    Returns (branch, history)."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    full = np.concatenate(train[0], axis=1)
    y = np.asarray(train[1])
    n, npts = len(y), len(layout.points)
    if n == 0:
        raise TinyexitError("the training split is empty; cannot train the shared branch")
    branch = build_branch(layout.size, num_classes)
    steps = math.ceil(n / cfg.batch_size)
    sched = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=steps * cfg.epochs, alpha=0.05)
    branch.compile(optimizer=keras.optimizers.Adam(sched), loss="sparse_categorical_crossentropy")
    masks = np.stack([layout.mask(k) for k in range(npts)])
    rng = np.random.default_rng(cfg.seed)
    best, best_w, history = -1.0, None, []
    for epoch in range(cfg.epochs):
        perm = rng.permutation(n)
        ks = rng.integers(0, npts, size=steps)                       # one exit point per batch
        xs = full[perm] * np.repeat(masks[ks], cfg.batch_size, axis=0)[:n]
        h = branch.fit(xs, y[perm], batch_size=cfg.batch_size, epochs=1, shuffle=False, verbose=0)
        val = branch_accuracy(branch, layout, *validation)
        history.append({"epoch": epoch + 1, "loss": float(h.history["loss"][-1]), "validation_accuracy": val})
        if np.mean(val) > best:
            best, best_w = float(np.mean(val)), branch.get_weights()
        if (epoch + 1) % 10 == 0 or epoch + 1 == cfg.epochs:
            log(f"  branch epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['loss']:.3f}, validation accuracy "
                f"per point {' '.join(f'{100 * v:.1f}' for v in val)} %")
    branch.set_weights(best_w)
    return branch, history


def trecx_head(shape: Sequence[int], num_classes: int, channels: int = 32, name: str = "head"):
    """A T-RecX-style exit head (docs/DESIGN.md 2, the DS-CNN one): the first `channels` channels -> 3x3
    depthwise stride 2 -> batch norm -> ReLU -> 2x2 average pool -> Dense -> softmax."""
    import keras
    from keras import layers

    from tinyexit.models.layers import ChannelSlice

    inp = keras.Input(tuple(int(v) for v in shape), name=f"{name}_input")
    c = min(int(channels), int(shape[-1]))
    x = ChannelSlice(0, c, name=f"{name}_slice")(inp) if c < shape[-1] else inp
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.AveragePooling2D((min(2, x.shape[1]), min(2, x.shape[2])), name=f"{name}_pool")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(num_classes, name=f"{name}_dense")(x)
    return keras.Model(inp, layers.Softmax(name=f"{name}_softmax")(x), name=name)


def train_heads(model, points: Sequence[str], x: np.ndarray, y: np.ndarray, num_classes: int,
                cfg: BranchConfig, log: Callable[[str], None] = lambda s: None) -> list:
    """One separate head per point, trained together on the frozen backbone (inference mode: no dropout,
    batch-norm statistics fixed); with head_epochs = 0 they are only built."""
    import keras

    keras.utils.set_random_seed(cfg.seed + 1)
    heads = [trecx_head(model.get_layer(p).output.shape[1:], num_classes, cfg.head_channels, f"head{k}")
             for k, p in enumerate(points)]
    if cfg.head_epochs == 0:
        return heads
    backbone = keras.Model(model.inputs, [model.get_layer(p).output for p in points], name="frozen_backbone")
    backbone.trainable = False
    inp = keras.Input(tuple(model.inputs[0].shape[1:]))
    feats = backbone(inp, training=False)
    feats = feats if isinstance(feats, (list, tuple)) else [feats]
    tm = keras.Model(inp, [h(f) for h, f in zip(heads, feats)])
    steps = math.ceil(len(x) / cfg.batch_size)
    sched = keras.optimizers.schedules.CosineDecay(cfg.head_learning_rate, decay_steps=steps * cfg.head_epochs,
                                                   alpha=0.05)
    tm.compile(optimizer=keras.optimizers.Adam(sched), loss=["sparse_categorical_crossentropy"] * len(heads))
    t0 = time.time()
    tm.fit(x, [y] * len(heads), batch_size=cfg.batch_size, epochs=cfg.head_epochs, verbose=0)
    log(f"  {len(heads)} separate heads trained for {cfg.head_epochs} epochs ({time.time() - t0:.0f} s)")
    backbone.trainable = True          # the layers are the run's model's: leave them as they were
    return heads


# ---------------------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------------------

def _accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores, axis=-1) == y)) if len(y) else float("nan")


def _load_splits(run_dir: Path, data) -> dict:
    if data is not None:
        missing = [s for s in ("train", "validation", "test") if s not in data]
        if missing:
            raise TinyexitError(f"data is missing the split(s) {missing}")
        return {s: (np.asarray(data[s][0], np.float32), np.asarray(data[s][1])) for s in ("train", "validation", "test")}
    return {s: Run(run_dir).split(s) for s in ("train", "validation", "test")}


def train_branch(run_dir: str | os.PathLike, *, points: Sequence[str] | None = None,
                 config: BranchConfig | None = None, data: dict | None = None, firmware: bool = True,
                 measure: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Train, quantize, evaluate and generate the shared exit branch of RUN/model.keras into RUN/branch/.

    points: exit-point layer names (default: every block output, `default_points`); data: optional
    {"train"|"validation"|"test": (x, y)} instead of the run's own splits (tinyexit.run.Run.split);
    firmware: generate the C library (RUN/branch/firmware/); measure: cross-compile it for code sizes.
    Returns the report (also RUN/branch/report.json)."""
    import keras

    log = log or (lambda s: None)
    cfg = config or BranchConfig()
    run = Run(run_dir)
    run_dir = run.path
    meta = run.model_json()
    if not run.is_trained():
        raise TinyexitError(f"{run.model_keras} does not exist; train the run first (`tinyexit train`)")
    model = run.load_model()
    points = check_points(model, points)
    classes = list(meta.get("classes") or [])
    num_classes = int(model.outputs[-1].shape[-1])
    splits = _load_splits(run_dir, data)
    (xt, yt), (xv, yv), (xs, ys) = splits["train"], splits["validation"], splits["test"]
    if cfg.num_eval is not None and cfg.num_eval < len(xs):
        keep = np.sort(np.random.default_rng(cfg.seed + 1).choice(len(xs), cfg.num_eval, replace=False))
        xs, ys = xs[keep], ys[keep]
    t0 = time.time()

    log(f"pooling the frozen backbone at {len(points)} exit points: {', '.join(points)}")
    raw = {s: pooled_features(model, points, x) for s, x in (("train", xt), ("validation", xv), ("test", xs))}
    scales = feature_scales(raw["train"])
    feats = {s: normalise(f, scales) for s, f in raw.items()}
    layout = VectorLayout(tuple(points), tuple(int(f.shape[1]) for f in raw["train"]))
    log(f"training the shared branch ({layout.size} -> {num_classes}) for {cfg.epochs} epochs, one exit point "
        f"per batch")
    branch, history = fit_branch(layout, (feats["train"], yt), (feats["validation"], yv), num_classes, cfg, log)
    shared_float = branch_accuracy(branch, layout, feats["test"], ys)

    log(f"separate T-RecX-style heads for comparison ({cfg.head_epochs} epochs)")
    heads = train_heads(model, points, xt, yt, num_classes, cfg, log)
    head_float = []
    if cfg.head_epochs:
        probe = keras.Model(model.inputs, [h(model.get_layer(p).output) for h, p in zip(heads, points)])
        outs = probe.predict(xs, batch_size=256, verbose=0)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        head_float = [_accuracy(o, ys) for o in outs]
    final_float = _accuracy(np.asarray(model.predict(xs, batch_size=256, verbose=0)[-1]
                                       if len(model.outputs) > 1 else model.predict(xs, verbose=0)), ys)

    rng = np.random.default_rng(cfg.seed)
    pick = np.sort(rng.choice(len(xt), size=min(cfg.num_calibration, len(xt)), replace=False))
    cal = [f[pick] for f in feats["train"]]
    # every stopping point, plus the per-slice training maxima so the vector's range covers [0, 1] whatever
    # the calibration subset
    rep_vectors = np.concatenate([layout.assemble(cal, k) for k in range(len(points))]
                                 + [np.concatenate([f.max(axis=0, keepdims=True) for f in feats["train"]], 1)])
    log(f"int8: backbone, poolings and heads converted once and cut at the exit points; branch on "
        f"{len(rep_vectors)} vectors")
    q = quantize_branch(model, points, heads, branch, layout, scales, xt[pick], rep_vectors)
    chain = BranchInt8Chain(q["segments"], q["pools"], q["branch"], layout, q["heads"])
    log(f"evaluating the int8 chain on {len(ys)} test inputs with tflite_micro")
    res = chain.run(xs)

    manifest = build_manifest(q, layout, scales, classes)
    vq = q["vector"]
    seg_macs = [s["macs"] for s in manifest["segments"]]
    branch_macs = manifest["branch"]["macs"]
    head_macs = [h["macs"] for h in manifest["heads"]]
    seg_names = [s["name"] for s in manifest["segments"]]

    shared_param = param_bytes(q["branch"]) + sum(param_bytes(b) for b in q["pools"])
    head_param = [param_bytes(b) for b in q["heads"]]
    exits = []
    for k, p in enumerate(points):
        backbone = sum(seg_macs[:k + 1])
        shape = manifest["segments"][k]["output_shape"]
        e = {"point": p, "feature_map": shape, "slice": {"offset": layout.offsets[k], "length": layout.lengths[k]},
             "backbone_macs": backbone, "pool_adds": int(np.prod(shape)),
             "shared": {"float_accuracy": shared_float[k], "int8_accuracy": _accuracy(res["shared"][k], ys),
                        "macs_to_exit": backbone + branch_macs},
             "head": {"float_accuracy": head_float[k] if head_float else None,
                      "int8_accuracy": _accuracy(res["heads"][k], ys) if cfg.head_epochs else None,
                      "macs": head_macs[k], "macs_to_exit": backbone + head_macs[k], "param_bytes": head_param[k]}}
        exits.append(e)
    report = {
        "evaluator": "tflite_micro", "split": "test", "num_test": int(len(ys)), "points": list(points),
        "config": asdict(cfg), "num_classes": num_classes,
        "vector": {"size": layout.size, "scale": vq.scale, "zero_point": vq.zero_point},
        "exits": exits,
        "final": {"float_accuracy": final_float, "int8_accuracy": _accuracy(res["final"], ys),
                  "macs": sum(seg_macs)},
        "memory": {
            "shared_param_bytes": shared_param,
            "heads_param_bytes": sum(head_param),
            "saving_param_bytes": sum(head_param) - shared_param,
            "saving_fraction": (1 - shared_param / sum(head_param)) if sum(head_param) else None,
            "note": "int8 weights + int32 biases of conv/depthwise/fully-connected; poolings have none",
        },
        "history": history,
        "data": meta.get("data", {}).get("source"),
        "seconds": None,
    }
    if meta.get("data", {}).get("source") == "synthetic":
        report["data_note"] = "synthetic speech: proves the pipeline, not accuracy on real speech"

    final_dir = run.branch_dir
    with run.writing_branch() as out:
        tmp = out.path
        files = {}
        for k, b in enumerate(q["segments"]):
            files[seg_names[k]] = write_bytes(out.piece(f"{seg_names[k]}.tflite"), b)
        for k, b in enumerate(q["pools"]):
            files[f"pool{k}"] = write_bytes(out.piece(f"pool{k}.tflite"), b)
        files["branch"] = write_bytes(out.piece("branch.tflite"), q["branch"])
        for k, b in enumerate(q["heads"]):
            write_bytes(out.piece(f"head{k}.tflite"), b)
        with atomic_path(out.piece("branch.keras")) as p:
            branch.save(p)
        if firmware:
            from tinyexit.branch.firmware import flash_figures, write_firmware

            log("generating the C library (segments, pools, branch) and the anytime driver")
            gen = write_firmware(tmp, manifest, measure=measure)
            report["firmware"] = flash_figures(gen, manifest, tmp, final_dir)
            report["memory"].update(report["firmware"]["memory"])
        report["seconds"] = round(time.time() - t0, 1)
        report["plot"] = "branch.png"
        plot_branch(report, out.piece("branch.png"))
        write_json(out.manifest_path, manifest)
        write_json(out.report_path, report)
    return report
