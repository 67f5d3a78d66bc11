"""Shared exit branch (FreeML, DESIGN.md 3): one classifier for every exit point, trained on a frozen backbone.

Float model. Exit point k's feature map (NHWC) is averaged over H and W (its own pooling) and divided by a fixed
per-point `feature_scale` a_k (the largest pooled value seen in training), giving slice k of a fixed vector
(offset = channels of the points before it, length = its channels). Slices of points not yet computed are zero.
One Dense + softmax maps the vector to classes. Training samples one exit point per batch (the slices after
it zeroed), over pooled features precomputed once from the frozen backbone.

int8. The backbone, the poolings and T-RecX-style separate heads (for the comparison) are converted together
once and the int8 graph is cut at the exit-point tensors (`tinyexit.quantize.cut_tflite`): segment k ends at
point k, pool k is the MEAN from point k, head k is the head from point k. The branch (FULLY_CONNECTED +
SOFTMAX) is converted on the vectors; its input quantization (s, zp) is the vector's. Pool k's output tensor
is given (s x a_k, zp): MEAN requantizes, so pool k writes slice k directly in the vector's quantization, and
a slice not yet computed is zp, exactly zero for the FULLY_CONNECTED.

Public API:
    BranchConfig                              hyper-parameters of the stage
    default_points(model)                     every block output of the backbone (`block3_out`, `stack2_out`)
    pooled_features(model, points, x)         float average-pooled features per point
    VectorLayout                              offsets/lengths of the slices; `mask(k)`, `assemble(feats, k)`
    fit_branch(...) / trecx_head(...) / train_heads(...)
    quantize_branch(model, points, heads, branch, layout, scales, rep_x, rep_vectors) -> int8 pieces (bytes)
    BranchInt8Chain(...).run_q(q[, stop])     int8 chain on tflite_micro: branch output after every point
    build_manifest(q, layout, scales, classes) RUN/branch/manifest.json
    read_branch_manifest(branch_dir) / BranchInt8Chain.from_dir(branch_dir)
    train_branch(run_dir, points=..., config=...) -> report; writes RUN/branch/ atomically
"""
from __future__ import annotations

import math
import os
import re
import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.io import atomic_path, save_figure, write_bytes, write_json
from tinyexit.quantize.qparams import QParams
from tinyexit.run import BranchDir, Run



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
# Exit points and the vector
# ---------------------------------------------------------------------------------------------------------

_BLOCK_OUT = re.compile(r"(block|stack)\d+_out")


def _backbone_layers(model) -> set[str]:
    from tinyexit.models.macs import ancestors
    return ancestors(model.outputs[-1])


def default_points(model) -> list[str]:
    """Every block output on the path to the final exit (layers named `block<k>_out` or `stack<k>_out`, as
    tinyexit's DS-CNN, MobileNet and ResNet-8 builders name them), in depth order."""
    backbone = _backbone_layers(model)
    return [lay.name for lay in model.layers if _BLOCK_OUT.fullmatch(lay.name) and lay.name in backbone]


def check_points(model, points: Sequence[str] | None) -> list[str]:
    """The exit points to use: `points` validated and put in depth order, or the default."""
    if points is None:
        points = default_points(model)
        if not points:
            raise TinyexitError(f"model '{model.name}' has no layer named like 'block3_out' or 'stack2_out' to "
                                f"use as default exit points; name them with --points LAYER,LAYER,...")
    points = list(points)
    if not points:
        raise TinyexitError("no exit point given; pass at least one layer name with --points")
    if len(set(points)) != len(points):
        raise TinyexitError(f"exit points {points} name a layer twice; list each once")
    order = {lay.name: i for i, lay in enumerate(model.layers)}
    backbone = _backbone_layers(model)
    for p in points:
        if p not in order:
            near = [n for n in order if _BLOCK_OUT.fullmatch(n)]
            raise TinyexitError(f"exit point '{p}' is not a layer of the model; block outputs are: "
                                f"{', '.join(near) or '(none)'}")
        if p not in backbone:
            raise TinyexitError(f"exit point '{p}' is not on the path to the final output (it is part of an "
                                f"exit head?); choose a backbone layer")
        if len(model.get_layer(p).output.shape) != 4:
            raise TinyexitError(f"exit point '{p}' outputs shape {tuple(model.get_layer(p).output.shape)}, not an "
                                f"NHWC feature map; choose the output of a convolutional block")
    return sorted(points, key=order.__getitem__)


@dataclass(frozen=True)
class VectorLayout:
    """Where each exit point's slice lives in the shared vector."""
    points: tuple[str, ...]
    lengths: tuple[int, ...]

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(int(v) for v in np.cumsum((0,) + self.lengths[:-1]))

    @property
    def size(self) -> int:
        return int(sum(self.lengths))

    def mask(self, k: int) -> np.ndarray:
        """1.0 on the slices of points 0..k (computed when inference stops at point k), 0.0 elsewhere."""
        m = np.zeros(self.size, np.float32)
        m[:self.offsets[k] + self.lengths[k]] = 1.0
        return m

    def assemble(self, feats: Sequence[np.ndarray], k: int) -> np.ndarray:
        """The float vector when inference stops at point k: slices 0..k from `feats`, the rest zero."""
        return np.concatenate(feats, axis=1) * self.mask(k)


def pooled_features(model, points: Sequence[str], x: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
    """Average over H and W of each point's feature map, from the float model (inference mode)."""
    import keras

    probe = keras.Model(model.inputs, [keras.layers.GlobalAveragePooling2D()(model.get_layer(p).output)
                                       for p in points])
    outs = probe.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)
    return [np.asarray(outs, np.float32)] if len(points) == 1 else [np.asarray(o, np.float32) for o in outs]


def feature_scales(feats: Sequence[np.ndarray]) -> list[float]:
    """a_k: the largest absolute pooled value of point k in training (1.0 for an all-zero point), stored as
    float32 so the int8 scale s x a_k is reproducible."""
    return [float(np.float32(np.max(np.abs(f)))) if np.max(np.abs(f)) > 0 else 1.0 for f in feats]


def normalise(feats: Sequence[np.ndarray], scales: Sequence[float]) -> list[np.ndarray]:
    return [np.asarray(f, np.float32) / np.float32(a) for f, a in zip(feats, scales)]


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
    """A T-RecX-style exit head (DESIGN.md 2, the DS-CNN one): the first `channels` channels -> 3x3
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
# int8
# ---------------------------------------------------------------------------------------------------------

def set_tensor_qparams(tfl: bytes, which: str, qp: QParams, index: int = 0) -> bytes:
    """A copy of `tfl` whose input or output tensor `index` has scale/zero point `qp` (the one-element
    vectors patched in place; refused when another tensor shares them)."""
    from tinyexit.quantize import _all_qparams, tensor_qparams
    import tflite

    buf = bytearray(tfl)
    sg = tflite.Model.GetRootAsModel(bytes(buf), 0).Subgraphs(0)
    t = sg.Inputs(index) if which == "input" else sg.Outputs(index)
    q = sg.Tensors(t).Quantization()
    if q is None or q.ScaleLength() != 1 or q.ZeroPointLength() != 1:
        raise TinyexitError(f"the model's {which} is not per-tensor quantized; cannot set its parameters")
    struct.pack_into("<f", buf, q._tab.Vector(q._tab.Offset(8)), qp.scale)
    struct.pack_into("<q", buf, q._tab.Vector(q._tab.Offset(10)), qp.zero_point)
    out = bytes(buf)
    if tensor_qparams(out, which, index) != QParams(float(np.float32(qp.scale)), int(qp.zero_point)):
        raise AssertionError("flatbuffer patch did not take")
    before, after = _all_qparams(tfl), _all_qparams(out)
    if any(before[i] != v for i, v in after.items() if i != t):
        raise TinyexitError("the .tflite shares quantization vectors between tensors; cannot set the slice "
                            "quantization in place")
    return out


def param_bytes(tfl: bytes) -> int:
    """Bytes of the weights and biases (constant inputs 1 and 2 of CONV_2D, DEPTHWISE_CONV_2D and
    FULLY_CONNECTED) of an int8 .tflite: what an exit costs in flash before code and requantization tables."""
    import tflite

    m = tflite.Model.GetRootAsModel(tfl, 0)
    sg = m.Subgraphs(0)
    B = tflite.BuiltinOperator
    total = 0
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        oc = m.OperatorCodes(op.OpcodeIndex())
        if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) not in (B.CONV_2D, B.DEPTHWISE_CONV_2D,
                                                                      B.FULLY_CONNECTED):
            continue
        for j in (1, 2):
            if j < op.InputsLength() and op.Inputs(j) >= 0:
                total += m.Buffers(sg.Tensors(op.Inputs(j)).Buffer()).DataLength()
    return total


def quantize_branch(model, points: Sequence[str], heads: Sequence | None, branch, layout: VectorLayout,
                    scales: Sequence[float], rep_x: np.ndarray, rep_vectors: np.ndarray) -> dict:
    """int8 pieces. The backbone with a MEAN at every point (and the separate heads, if given) is converted
    once and cut at the point tensors; the branch is converted on `rep_vectors` and its input quantization
    written, times a_k, into each pool's output. Returns {"segments": [bytes] (N + 1: the last one is the
    model's own final classifier), "pools": [bytes], "heads": [bytes], "branch": bytes, "vector": QParams,
    "boundaries": [...]}."""
    import keras

    from tinyexit.quantize import _subgraph, convert_int8, cut_tflite, find_boundary, output_order

    n = len(points)
    pts = [model.get_layer(p).output for p in points]
    pools = [keras.layers.GlobalAveragePooling2D(name=f"shared_pool{k}")(t) for k, t in enumerate(pts)]
    head_outs = [h(t) for h, t in zip(heads, pts)] if heads else []
    probe = keras.Model(model.inputs, pools + head_outs + [model.outputs[-1]], name="shared_probe")
    whole = convert_int8(probe, rep_x)
    _, sg = _subgraph(whole)
    outs = [int(sg.Outputs(i)) for i in output_order(whole)]
    pool_o, head_o, final_o = outs[:n], outs[n:n + len(head_outs)], outs[-1]
    bounds = []
    for k, p in enumerate(points):
        later = pool_o[k:] + head_o[k:] + [final_o]
        bounds.append(find_boundary(whole, p, pts[k].shape[1:], later))
    inp = int(sg.Inputs(0))
    segs = [cut_tflite(whole, [a], [b]) for a, b in zip([inp] + bounds, bounds + [final_o])]
    head_b = [cut_tflite(whole, [bounds[k]], [head_o[k]]) for k in range(len(head_o))]
    branch_b = convert_int8(branch, rep_vectors)
    vq = _tensor_qp(branch_b, "input")
    pool_b = []
    for k in range(n):
        cut = cut_tflite(whole, [bounds[k]], [pool_o[k]])
        pool_b.append(set_tensor_qparams(cut, "output", QParams(float(np.float32(vq.scale * scales[k])),
                                                                  vq.zero_point)))
    boundaries = []
    for k, (p, t) in enumerate(zip(points, bounds)):
        q = sg.Tensors(t).Quantization()
        boundaries.append({"exit_point": p, "after_segment": k, "tensor": sg.Tensors(t).Name().decode(),
                           "scale": float(q.Scale(0)), "zero_point": int(q.ZeroPoint(0))})
    return {"segments": segs, "pools": pool_b, "heads": head_b, "branch": branch_b, "vector": vq,
            "boundaries": boundaries}


def _tensor_qp(tfl: bytes, which: str) -> QParams:
    from tinyexit.quantize import tensor_qparams
    return tensor_qparams(tfl, which)


class BranchInt8Chain:
    """The int8 pieces chained as the firmware chains them, on tflite_micro (the generated C's oracle)."""

    def __init__(self, segments: Sequence[bytes], pools: Sequence[bytes], branch: bytes,
                 layout: VectorLayout, heads: Sequence[bytes] = ()):
        from tinyexit.quantize import TflmModel, tensor_qparams, tensor_shape

        if len(pools) != len(layout.points) or len(segments) != len(pools) + 1:
            raise TinyexitError(f"{len(segments)} segments and {len(pools)} pools for {len(layout.points)} exit "
                                f"points: expected one pool per point and one segment more")
        self.layout = layout
        self.segments = [TflmModel(b) for b in segments]
        self.pools = [TflmModel(b) for b in pools]
        self.heads = [TflmModel(b) for b in heads]
        self.branch = TflmModel(branch)
        self.input_qparams = tensor_qparams(segments[0], "input")
        self.vector_qparams = tensor_qparams(branch, "input")
        self.branch_output_qparams = tensor_qparams(branch, "output")
        self.seg_shapes = [tuple(tensor_shape(b, "output")[1:]) for b in segments]

    @classmethod
    def from_dir(cls, branch_dir: str | os.PathLike) -> "BranchInt8Chain":
        d = BranchDir(branch_dir)
        man = d.manifest()
        layout = VectorLayout(tuple(s["point"] for s in man["vector"]["slices"]),
                              tuple(s["length"] for s in man["vector"]["slices"]))
        rd = lambda e: d.piece(e["file"]).read_bytes()  # noqa: E731
        return cls([rd(s) for s in man["segments"]], [rd(p) for p in man["pools"]], rd(man["branch"]), layout,
                   [rd(h) for h in man.get("heads", [])])

    def run_q(self, q: np.ndarray, stop: int | None = None) -> dict:
        """int8 model inputs [n, ...] -> {"shared": [int8 [n, C] after point k for k = 0..stop],
        "vectors": [the int8 vector the branch saw at point k], "heads": [[n, C] per point, when built],
        "final": [n, C] (the model's own final classifier; only when stop is None)}."""
        q = np.asarray(q, np.int8)
        n, last = len(q), len(self.pools) - 1 if stop is None else int(stop)
        vec = np.full((n, self.layout.size), self.vector_qparams.zero_point, np.int8)
        act = q
        out = {"shared": [], "vectors": [], "heads": []}
        for k in range(last + 1):
            act = self.segments[k].run(act)[0].reshape((n,) + self.seg_shapes[k])
            off, length = self.layout.offsets[k], self.layout.lengths[k]
            vec[:, off:off + length] = self.pools[k].run(act)[0].reshape(n, length)
            out["vectors"].append(vec.copy())
            out["shared"].append(self.branch.run(vec)[0].reshape(n, -1))
            if self.heads:
                out["heads"].append(self.heads[k].run(act)[0].reshape(n, -1))
        if stop is None:
            out["final"] = self.segments[-1].run(act)[0].reshape(n, -1)
        return out

    def run(self, x: np.ndarray, stop: int | None = None) -> dict:
        from tinyexit.quantize import quantize_array
        return self.run_q(quantize_array(x, self.input_qparams), stop)


def read_branch_manifest(branch_dir: str | os.PathLike) -> dict:
    """RUN/branch/manifest.json, checked (`tinyexit.run.BranchDir.manifest`)."""
    return BranchDir(branch_dir).manifest()


# ---------------------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------------------

def build_manifest(q: dict, layout: VectorLayout, scales: Sequence[float], classes: Sequence[str]) -> dict:
    """RUN/branch/manifest.json for the pieces of `quantize_branch` (docs/CONTRACTS.md)."""
    from tinyexit.quantize import count_macs, tensor_qparams, tensor_shape

    points = layout.points
    vq = q["vector"]
    seg_macs = [count_macs(b) for b in q["segments"]]
    branch_macs = count_macs(q["branch"])
    head_macs = [count_macs(b) for b in q["heads"]]
    seg_names = [f"seg{k}" for k in range(len(points) + 1)]
    return {
        "points": list(points),
        "segments": [{"name": seg_names[k], "file": f"{seg_names[k]}.tflite",
                      "ends_at": points[k] if k < len(points) else "final",
                      "input_shape": tensor_shape(b, "input")[1:], "output_shape": tensor_shape(b, "output")[1:],
                      "input": tensor_qparams(b, "input").to_json(), "output": tensor_qparams(b, "output").to_json(),
                      "macs": seg_macs[k]} for k, b in enumerate(q["segments"])],
        "pools": [{"name": f"pool{k}", "file": f"pool{k}.tflite", "point": p, "after_segment": k,
                   "input": tensor_qparams(q["pools"][k], "input").to_json(),
                   "output": tensor_qparams(q["pools"][k], "output").to_json(),
                   "offset": layout.offsets[k], "length": layout.lengths[k]} for k, p in enumerate(points)],
        "branch": {"name": "branch", "file": "branch.tflite", "input": vq.to_json(),
                   "output": tensor_qparams(q["branch"], "output").to_json(), "macs": branch_macs},
        "vector": {"size": layout.size, "scale": vq.scale, "zero_point": vq.zero_point,
                   "slices": [{"point": p, "offset": layout.offsets[k], "length": layout.lengths[k],
                               "feature_scale": scales[k],
                               "scale": tensor_qparams(q["pools"][k], "output").scale}
                              for k, p in enumerate(points)],
                   "note": "slice k = int8 MEAN over H,W of point k's map with scale vector.scale x feature_scale; "
                           "slices not computed yet hold zero_point"},
        "heads": [{"name": f"head{k}", "file": f"head{k}.tflite", "point": p, "after_segment": k,
                   "output": tensor_qparams(b, "output").to_json(), "macs": head_macs[k]}
                  for k, (p, b) in enumerate(zip(points, q["heads"]))],
        "classes": list(classes),
    }


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


def plot_branch(rep: dict, path: Path) -> None:
    """Accuracy per exit point against MACs (shared branch vs separate heads, int8) and the memory of each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    ex = rep["exits"]
    a.plot([e["shared"]["macs_to_exit"] / 1e6 for e in ex], [e["shared"]["int8_accuracy"] for e in ex], "o-",
           label="shared branch (int8)")
    if ex and ex[0]["head"]["int8_accuracy"] is not None:
        a.plot([e["head"]["macs_to_exit"] / 1e6 for e in ex], [e["head"]["int8_accuracy"] for e in ex], "s--",
               label="separate heads (int8)")
    a.plot([rep["final"]["macs"] / 1e6], [rep["final"]["int8_accuracy"]], "k*", ms=10, label="final classifier")
    for e in ex:
        a.annotate(e["point"], (e["shared"]["macs_to_exit"] / 1e6, e["shared"]["int8_accuracy"]), fontsize=7,
                   textcoords="offset points", xytext=(4, -10))
    a.set(title=f"accuracy per exit point ({rep['num_test']} test inputs)", xlabel="MACs to exit (M)",
          ylabel="accuracy")
    a.legend(fontsize=8)
    m = rep["memory"]
    b.bar(["shared branch", f"{len(ex)} heads"], [m["shared_param_bytes"], m["heads_param_bytes"]],
          color=["tab:blue", "tab:orange"])
    b.set(title="exit weights + biases (int8, bytes)")
    save_figure(fig, path, dpi=110)


def format_report(rep: dict) -> str:
    """The figures as a table for people."""
    pct = lambda v: "     -" if v is None else f"{100 * v:5.1f}%"  # noqa: E731
    rows = [f"shared exit branch: vector of {rep['vector']['size']} int8 values, {len(rep['points'])} exit points, "
            f"{rep['num_test']} test inputs (int8 on {rep['evaluator']})",
            f"  {'exit point':<14} {'shared float':>12} {'shared int8':>11} {'MACs':>10}  {'head float':>10} "
            f"{'head int8':>9} {'MACs':>10}"]
    for e in rep["exits"]:
        s, h = e["shared"], e["head"]
        rows.append(f"  {e['point']:<14} {pct(s['float_accuracy']):>12} {pct(s['int8_accuracy']):>11} "
                    f"{s['macs_to_exit']:>10,}  {pct(h['float_accuracy']):>10} {pct(h['int8_accuracy']):>9} "
                    f"{h['macs_to_exit']:>10,}")
    f = rep["final"]
    rows.append(f"  {'final (model)':<14} {pct(f['float_accuracy']):>12} {pct(f['int8_accuracy']):>11} "
                f"{f['macs']:>10,}")
    m = rep["memory"]
    n = len(rep["points"])
    rows.append(f"  memory, weights+biases: one shared branch {m['shared_param_bytes']:,} B vs {n} separate heads "
                f"{m['heads_param_bytes']:,} B (saves {m['saving_param_bytes']:,} B, "
                f"{100 * (m['saving_fraction'] or 0):.0f}%)")
    if "shared_flash_bytes" in m:
        rows.append(f"  memory, generated C constants: shared {m['shared_flash_bytes']:,} B vs heads "
                    f"{m['heads_flash_bytes']:,} B (saves {m['heads_flash_bytes'] - m['shared_flash_bytes']:,} B)")
    if rep.get("data_note"):
        rows.append(f"  note: {rep['data_note']}")
    return "\n".join(rows)
