"""Post-training exit augmentation (PTEENet; Sponner et al.): attach exit heads to an already trained Keras
model without changing any of its weights, and write a run directory like `tinyexit train` does.

The backbone stays frozen: its activations at an exit point are computed once (or batch by batch when they do
not fit in memory) and each head is trained on them alone, so the original layers are never in a training
step. The augmented model reuses the original layer objects; `weights_identical` checks the result.

Exit points: `tinyexit.research.graph.candidate_points` (layers that cut the graph and survive int8).

Head (T-RecX style, sized by `HeadConfig.width`): first `width` channels (kind "slice") or a 1x1 conv to
`width` channels + BN + ReLU (kind "conv") -> 3x3 depthwise stride 2 + BN + ReLU -> average pool down to at
most `grid` x `grid` -> Dense -> softmax.

Public API:
    HeadConfig(width, kind, grid)
    attach_exits(model, {point: HeadConfig}, num_classes) -> Keras model [exits..., final], untrained heads
    train_head(model, point, cfg, train, validation, ...) -> (trained head Keras model, history)
    augment_model(model_or_path, out=RUN, points=[...], data=..., task=...) -> report; writes the run
    weights_identical(original, augmented)        -> {"tensors", "identical", "different": [...]}
"""
from __future__ import annotations

import hashlib
import math
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tinyexit.errors import TinyexitError, brief
from tinyexit.io import write_json
from tinyexit.research.graph import backbone_model, candidate_points, point_tensor

FEATURE_CACHE_BYTES = 768 * 2 ** 20     # exit-point activations kept in memory up to this size


@dataclass(frozen=True)
class HeadConfig:
    width: int = 32          # channels the head works on
    kind: str = "auto"       # "slice": first `width` channels; "conv": 1x1 conv to `width`; "auto": slice if it can
    kernel: int = 3          # depthwise kernel
    grid: int = 4            # average pool down to at most grid x grid

    def resolved(self, channels: int) -> "HeadConfig":
        if self.width < 1:
            raise TinyexitError(f"head width must be at least 1, got {self.width}")
        if self.kind not in ("auto", "slice", "conv"):
            raise TinyexitError(f"head kind {self.kind!r} is not one of auto, slice, conv")
        kind = ("slice" if self.width <= channels else "conv") if self.kind == "auto" else self.kind
        if kind == "slice" and self.width > channels:
            raise TinyexitError(f"a slice head of width {self.width} needs at least {self.width} channels, the exit "
                                f"point has {channels}; use kind conv or a smaller width")
        return HeadConfig(self.width, kind, self.kernel, self.grid)

    @property
    def label(self) -> str:
        return f"{self.kind}{self.width}"


# ---------------------------------------------------------------------------------------------- heads

def build_head(x, name: str, cfg: HeadConfig, num_classes: int, bn_momentum: float = 0.9):
    """Apply a new exit head to the feature map tensor `x`; returns (softmax output named `name`, pooled
    features). Layer names are `{name}_...`."""
    from keras import layers

    from tinyexit.models.layers import ChannelSlice

    h, w, c = (int(v) for v in x.shape[1:])
    cfg = cfg.resolved(c)
    if cfg.kind == "slice":
        if cfg.width < c:
            x = ChannelSlice(0, cfg.width, name=f"{name}_slice")(x)
    else:
        x = layers.Conv2D(cfg.width, 1, use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_conv_bn")(x)
        x = layers.ReLU(name=f"{name}_conv_relu")(x)
    strides = (2 if h > 1 else 1, 2 if w > 1 else 1)
    x = layers.DepthwiseConv2D(cfg.kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    h2, w2 = int(x.shape[1]), int(x.shape[2])
    pool = (max(1, h2 // cfg.grid), max(1, w2 // cfg.grid))
    if pool != (1, 1):
        x = layers.AveragePooling2D(pool, name=f"{name}_pool")(x)
    feats = layers.Flatten(name=f"{name}_flatten")(x)
    logits = layers.Dense(num_classes, name=f"{name}_dense")(feats)
    return layers.Softmax(name=name)(logits), feats


def _final_softmax(model):
    """The backbone's final output as probabilities: a softmax layer is appended (no weights) when the model
    ends in logits."""
    from keras import layers

    out = model.outputs[0]
    op = out._keras_history.operation
    act = getattr(op, "activation", None)
    if type(op).__name__ == "Softmax" or getattr(act, "__name__", "") == "softmax":
        return out
    if "final" in {lay.name for lay in model.layers}:
        raise TinyexitError("the model ends in logits and already has a layer named 'final'; rename it")
    return layers.Softmax(name="final")(out)


def exit_names(model, n: int) -> list[str]:
    taken = {lay.name for lay in model.layers}
    prefix = "exit"
    while any(f"{prefix}{k + 1}" in taken or any(t.startswith(f"{prefix}{k + 1}_") for t in taken) for k in range(n)):
        prefix = "tx_" + prefix
    return [f"{prefix}{k + 1}" for k in range(n)]


def attach_exits(model, heads: dict[str, HeadConfig], num_classes: int, names: Sequence[str] | None = None):
    """A new Keras model with outputs [exit_1, ..., exit_K, final] sharing the original layers (and weights):
    one new head per exit point in `heads`, ordered by depth. Heads are untrained (see `train_head`)."""
    import keras

    base = backbone_model(model)
    order = [c["point"] for c in candidate_points(base, min_size=1)]
    unknown = [p for p in heads if p not in order]
    if unknown:
        raise TinyexitError(f"exit point(s) {unknown} are not layers where the graph can be cut; choose from "
                            f"{order} (see `tinyexit augment MODEL --list`)")
    points = sorted(heads, key=order.index)
    names = list(names) if names is not None else exit_names(base, len(points))
    outs = [build_head(point_tensor(base, p), n, heads[p], num_classes)[0] for p, n in zip(points, names)]
    return keras.Model(base.inputs[0], outs + [_final_softmax(base)], name=f"{base.name}_exits")


# ---------------------------------------------------------------------------------------------- training

class _Features:
    """Activations of the frozen backbone at one exit point: cached in memory when small enough, otherwise
    computed batch by batch."""

    def __init__(self, base, point: str, x: np.ndarray, batch_size: int = 256):
        import keras

        self.probe = keras.Model(base.inputs[0], point_tensor(base, point))
        self.x = x
        self.shape = tuple(int(v) for v in self.probe.outputs[0].shape[1:])
        nbytes = len(x) * math.prod(self.shape) * 4
        self.cached = self.probe.predict(x, batch_size=batch_size, verbose=0) if nbytes <= FEATURE_CACHE_BYTES else None

    def dataset(self, y: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0):
        import keras

        if self.cached is not None:
            return self.cached, y
        probe, x = self.probe, self.x

        class _Seq(keras.utils.PyDataset):
            def __init__(self):
                super().__init__()
                self.order = np.arange(len(x))
                self.rng = np.random.default_rng(seed)

            def __len__(self):
                return int(np.ceil(len(x) / batch_size))

            def __getitem__(self, i):
                idx = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
                return probe(x[idx], training=False), y[idx]

            def on_epoch_end(self):
                if shuffle:
                    self.rng.shuffle(self.order)

        return _Seq(), None


@dataclass(frozen=True)
class HeadTrainConfig:
    epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 3e-3
    seed: int = 0


def train_head(feats: _Features, feats_val: _Features, y: np.ndarray, yv: np.ndarray, name: str,
               cfg: HeadConfig, num_classes: int, tc: HeadTrainConfig = HeadTrainConfig(), verbose: int = 0):
    """Train one exit head on the frozen backbone's activations at its exit point; the weights of the best
    validation epoch are kept. Returns (head model: exit point -> [softmax, pooled features], history)."""
    import keras

    keras.utils.set_random_seed(tc.seed)
    inp = keras.Input(feats.shape, name=f"{name}_input")
    out, pooled = build_head(inp, name, cfg, num_classes)
    head = keras.Model(inp, [out, pooled], name=f"{name}_head")
    trainer = keras.Model(inp, out)
    n = len(y)
    steps = max(1, int(np.ceil(n / tc.batch_size))) * tc.epochs
    lr = keras.optimizers.schedules.CosineDecay(tc.learning_rate, steps, alpha=0.03)
    trainer.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    xs, ys = feats.dataset(y, tc.batch_size, shuffle=True, seed=tc.seed)
    xv, yvv = feats_val.dataset(yv, tc.batch_size, shuffle=False)
    best = {"acc": -1.0, "weights": None}

    class _Best(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            v = (logs or {}).get("val_accuracy", -1.0)
            if v > best["acc"]:
                best.update(acc=v, weights=trainer.get_weights(), epoch=epoch)

    kw = dict(batch_size=tc.batch_size, shuffle=True) if ys is not None else {}
    hist = trainer.fit(xs, ys, validation_data=(xv, yvv) if yvv is not None else xv, epochs=tc.epochs,
                       verbose=verbose, callbacks=[_Best()], **kw)
    if best["weights"] is not None:
        trainer.set_weights(best["weights"])
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    history["best_epoch"] = int(best.get("epoch", tc.epochs - 1)) + 1
    return head, history


def copy_head_weights(head, model) -> None:
    """Copy a trained head's layer weights into the same-named layers of `model`."""
    for lay in head.layers:
        if lay.weights:
            model.get_layer(lay.name).set_weights(lay.get_weights())


def weights_identical(original, augmented) -> dict:
    """Compare every weight tensor of `original` with the same-named layer of `augmented`, bit for bit."""
    tensors, different = 0, []
    for lay in original.layers:
        mine = augmented.get_layer(lay.name).get_weights() if lay.weights else []
        for k, w in enumerate(lay.get_weights()):
            tensors += 1
            if k >= len(mine) or mine[k].shape != w.shape or mine[k].tobytes() != w.tobytes():
                different.append(f"{lay.name}[{k}]")
    return {"tensors": tensors, "identical": tensors - len(different), "different": different}


# ---------------------------------------------------------------------------------------------- data

def data_recipe(*, task: str | None = None, data: str | Path | None = None, from_run: str | Path | None = None,
                train_copies: int | None = None) -> tuple[dict, list[str], dict]:
    """(data recipe for model.json, class names, data report) for a model trained elsewhere:
    `from_run`: reuse a run directory's data; task kws (`data` a Speech Commands v2 style folder) or
    ic / vww (`data` a CIFAR-10 / image folder, None the offline default)."""
    from tinyexit.data.recipe import data_config_for
    from tinyexit.run import Run

    if from_run is not None:
        meta = Run(from_run).model_json()
        return dict(meta["data"]), list(meta["classes"]), {"source": meta["data"].get("source"),
                                                             "dir": meta["data"].get("dir"), "from_run": str(from_run)}
    if task == "kws":
        if data is None:
            raise TinyexitError("task kws needs --data: a Speech Commands v2 style folder (e.g. made by "
                                "`tinyexit data kws --out DIR`)")
        from tinyexit.data.speech_commands import CLASSES
        dc = data_config_for(data, train_copies=train_copies or 1)
        return asdict(dc), list(CLASSES), {"source": dc.source, "dir": dc.dir}
    if task in ("ic", "vww"):
        from tinyexit.data.images import load_image_task
        ims = load_image_task(task, data)
        meta = {"kind": task, "dir": str(Path(data).resolve()) if data else None, "source": ims.source, "seed": 0,
                "train_copies": train_copies or 1, "flip": not ims.source.startswith("mnist")}
        return meta, list(ims.classes), {"source": ims.source, "dir": meta["dir"], "note": ims.note}
    raise TinyexitError(f"say which data the model was trained on: --task kws|ic|vww with --data, or --from-run RUN "
                        f"(got task {task!r})")


def split_from_recipe(meta: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """What `tinyexit.run.Run.split` returns for a run with data recipe `meta`."""
    from tinyexit.data.recipe import recipe_split

    return recipe_split(meta, split)


def load_keras(model_or_path):
    import keras

    import tinyexit.models  # noqa: F401  (custom layers)
    if isinstance(model_or_path, (str, Path)):
        p = Path(model_or_path)
        if p.is_dir():
            from tinyexit.run import Run
            p = Run(p).model_keras
        if not p.is_file():
            raise TinyexitError(f"no Keras model at {model_or_path}; give a .keras file saved with model.save() "
                                f"or a run directory")
        if p.suffix == ".keras" and not zipfile.is_zipfile(p):   # Keras would say "file not found" here
            raise TinyexitError(f"{p} is not a complete .keras archive (truncated or another format); save the model "
                                f"again with model.save('m.keras')")
        try:
            return keras.models.load_model(p, compile=False), p
        except Exception as e:  # keras raises many types for unreadable files
            raise TinyexitError(f"cannot load {p} as a Keras model ({brief(e)}); save it with "
                                f"model.save('m.keras')") from None
    return model_or_path, None


def _sha256(p: Path | None) -> str | None:
    return hashlib.sha256(p.read_bytes()).hexdigest() if p is not None else None


# ---------------------------------------------------------------------------------------------- the run

def augment_model(model_or_path, *, out: str | Path, points: Sequence[str] | None = None,
                  heads: dict[str, HeadConfig] | None = None, head: HeadConfig = HeadConfig(),
                  task: str | None = None, data: str | Path | None = None, from_run: str | Path | None = None,
                  train_config: HeadTrainConfig = HeadTrainConfig(), max_train: int | None = None,
                  log: Callable[[str], None] = print, verbose: int = 0) -> dict:
    """Attach exit heads to a trained Keras model (a .keras file, a run directory or a model object) without
    changing its weights; train them with the backbone frozen; write the run directory `out`
    (model.keras [exits..., final], model.json, report.json, history.json, training.png). Returns the report.

    points: exit point layer names (default: the candidate nearest to half the backbone's MACs); heads: a
    HeadConfig per point (overrides `head`)."""
    import keras

    from tinyexit.models import exits_with_macs
    from tinyexit.train import cap_examples, evaluate_exits, plot_history

    t0 = time.time()
    original, path = load_keras(model_or_path)
    base = backbone_model(original)
    meta, classes, data_report = data_recipe(task=task, data=data, from_run=from_run)
    num_classes = int(base.outputs[0].shape[-1])
    if num_classes != len(classes):
        raise TinyexitError(f"the model outputs {num_classes} values but the data has {len(classes)} classes "
                            f"({', '.join(classes)}); give the data the model was trained on")
    cands = candidate_points(base)
    if not cands:
        raise TinyexitError(f"model '{base.name}' has no layer where an exit can go (a rank-4 feature map that cuts "
                            f"the graph); exits need a convolutional backbone")
    if heads is None:
        if points is None:
            total = cands[-1]["macs_to_point"] or 1
            points = [min(cands, key=lambda c: abs(c["macs_to_point"] - total / 2))["point"]]
        heads = {p: head for p in points}
    model = attach_exits(base, heads, num_classes)
    log(f"loading data ({data_report['source']})")
    x, y = split_from_recipe(meta, "train")
    xv, yv = split_from_recipe(meta, "validation")
    xt, yt = split_from_recipe(meta, "test")
    want = tuple(int(v) for v in base.inputs[0].shape[1:])
    if tuple(x.shape[1:]) != want:
        raise TinyexitError(f"the model takes inputs of shape {list(want)} but the data gives {list(x.shape[1:])}; "
                            f"give the data the model was trained on")
    x, y = cap_examples(x, y, max_train, train_config.seed)

    specs = exits_with_macs(model)
    history: dict[str, list[float]] = {}
    trained = {}
    for s in specs[:-1]:
        cfg = heads[s["point"]]
        log(f"training head {s['name']} ({cfg.label}) at {s['point']} with the backbone frozen "
            f"({len(x)} train / {len(xv)} validation examples, {train_config.epochs} epochs)")
        f_tr, f_va = _Features(base, s["point"], x), _Features(base, s["point"], xv)
        hmodel, hist = train_head(f_tr, f_va, y, yv, s["name"], cfg, num_classes, train_config, verbose=verbose)
        copy_head_weights(hmodel, model)
        trained[s["name"]] = hist.pop("best_epoch")
        history.update({f"{'val_' if k.startswith('val_') else ''}{s['name']}_{k.removeprefix('val_')}": v
                        for k, v in hist.items()})
    check = weights_identical(original if len(original.outputs) == 1 else base, model)
    if check["different"]:
        raise TinyexitError(f"internal error: augmentation changed original weights {check['different'][:5]}")

    acc, val_acc = evaluate_exits(model, xt, yt), evaluate_exits(model, xv, yv)
    task_name = meta.get("kind", "kws")
    report = {
        "task": task_name, "classes": list(classes),
        "exits": [{"name": s["name"], "accuracy": acc[s["name"]], "validation_accuracy": val_acc[s["name"]],
                   "macs": s["macs"], "point": s["point"]} for s in specs],
        "data": {**data_report, "train_examples": int(len(x)), "validation_examples": int(len(xv)),
                 "test_examples": int(len(xt)), "test_split": "the data recipe's test split"},
        "training": {**asdict(train_config), "method": "post-training augmentation: heads trained with the "
                     "backbone frozen", "best_epoch": trained, "wall_time_s": round(time.time() - t0, 1)},
        "model": {"name": model.name, "params": int(model.count_params()), "source": str(path) if path else None,
                  "source_sha256": _sha256(path)},
        "augment": {"heads": {p: asdict(heads[p].resolved(int(point_tensor(base, p).shape[-1])))
                              for p in heads},
                    "candidates": cands, "original_weights": {k: v for k, v in check.items() if k != "different"}},
    }
    model_json = {"task": task_name, "input_shape": list(want), "classes": list(classes), "exits": specs,
                  "data": meta}
    from tinyexit.run import Run
    with Run.create(out) as tmp:
        model.save(tmp.model_keras)
        write_json(tmp.model_json_path, model_json)
        write_json(tmp.report_path, report)
        write_json(tmp.history_path, history)
        plot_history(history, [s["name"] for s in specs[:-1]], tmp.training_plot)
    keras.backend.clear_session()
    return report


def format_candidates(cands: list[dict]) -> str:
    lines = [f"{'exit point':<28} {'shape':>14} {'MACs to point':>14}"]
    for c in cands:
        lines.append(f"{c['point']:<28} {'x'.join(map(str, c['shape'])):>14} {c['macs_to_point']:>14,}")
    return "\n".join(lines)


__all__ = ["HeadConfig", "HeadTrainConfig", "attach_exits", "build_head", "train_head", "augment_model",
           "weights_identical", "data_recipe", "split_from_recipe", "format_candidates", "load_keras"]
