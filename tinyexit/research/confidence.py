"""Learned confidence head (EENets / PTEENet): a tiny branch that predicts whether an early exit's prediction is
correct, used as the exit policy instead of the max softmax.

The branch reads the exit head's pooled features, its softmax and the softmax's maximum (a max pool over the
class axis): relu(Dense_h(pooled) + Dense_h(softmax) + Dense_h(max)) -> Dense(2) -> softmax; output
[P(wrong), P(right)]. (Dense layers added instead of one on a concatenation: the same function, and int8 ADD
takes inputs of different scales where CONCATENATION would not.) It is trained
after the exit head, with the backbone and the exit head frozen, on the training split (classes weighted so
that right and wrong count alike). The branch starts as a monotone function of the max softmax
(`_init_as_max_softmax`) so that a few hundred examples refine that ranking rather than replace it.

As THE exit policy of the toolchain (`tinyexit calibrate RUN --policy confidence`, `ensure_confidence`): one head
per early exit, trained by default on half of the validation split (data the exit head never saw; on the
training split the exit is right almost always and the head learns little), its int8 threshold calibrated with
the same risk control (ltt/ucb/crc) on the other half; the firmware runs it after the exit point (policy.json,
docs/CONTRACTS.md). Measured on the default KWS run it does not beat max-softmax (see the README).
Standalone (`train_confidence`): trained on the training split, P(right) >= t calibrated on validation like the
softmax threshold (lowest expected MACs at an accuracy target, or a given exit rate).

int8: the confidence model (exit point -> exit head -> branch -> P(right)) is converted on its own to a small
full-integer .tflite whose input quantization is set to the exit point's (the quant manifest's segment
output), so it reads the firmware's boundary tensor as is. Decisions in integer form: exit when q[1] >= t_q.

Public API:
    ensure_confidence(run, train_on="validation", fraction=0.5, ...) -> {exit: metadata}; RUN/confidence/<exit>.*
    Int8ConfidenceChain(run, {exit: tflite}).run_q(x_q) -> (exit outputs, confidence outputs), on tflite_micro
    train_confidence(run, exit_name=None, hidden=8, epochs=10) -> report; writes RUN/confidence/
    quantize_confidence(run) -> int8 .tflite bytes (also written to RUN/confidence/<exit>.tflite)
The comparison with max-softmax (scores, equal exit rates, calibration): `tinyexit.research.confidence_eval`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.io import atomic_path, write_bytes, write_json
from tinyexit.research.confidence_eval import compare_run, first_early_exit, format_comparison
from tinyexit.run import Run, as_run


def _exit_tensors(model, exit_name: str):
    """(exit point layer name, pooled-features tensor, softmax tensor) of early exit `exit_name`."""
    from tinyexit.models import exit_spec
    from tinyexit.research.graph import _Graph

    specs = {s["name"]: s for s in exit_spec(model)}
    if exit_name not in specs or specs[exit_name]["point"] is None:
        early = [n for n, s in specs.items() if s["point"] is not None]
        raise TinyexitError(f"'{exit_name}' is not an early exit of this run; choose one of {early}")
    out = next(t for t in model.outputs if t._keras_history.operation.name == exit_name)
    g = _Graph(out)
    op = out._keras_history.operation
    if type(op).__name__ == "Softmax":                 # Softmax(Dense(pooled))
        dense = g.tensor[g.producers[op.name][0]]._keras_history.operation
    else:                                              # Dense(activation="softmax")
        dense = op
    if type(dense).__name__ != "Dense":
        raise TinyexitError(f"the head of '{exit_name}' does not end in Dense -> softmax; a confidence branch reads "
                            f"the features that Dense layer sees")
    pooled = g.tensor[g.producers[dense.name][0]]
    return specs[exit_name]["point"], pooled, out


def build_confidence_model(model, exit_name: str, hidden: int = 8, init: str = "max_softmax"):
    """Keras model: exit point activations -> [P(wrong), P(right)], sharing the exit head's layers (frozen);
    returns (model, exit point name). init "max_softmax": start as a monotone function of the max softmax
    (`_init_as_max_softmax`); "random": Keras' default initialisation."""
    import keras
    from keras import layers

    from tinyexit.quantize import _rebuild
    from tinyexit.research.graph import _Graph, point_tensor

    point, pooled, probs = _exit_tensors(model, exit_name)
    boundary = point_tensor(model, point)
    inp = keras.Input(tuple(boundary.shape[1:]), name=f"{exit_name}_conf_input")
    new_probs = _rebuild(boundary, inp, probs, "confidence branch")          # the head applied once
    new_pooled = _Graph(new_probs).tensor[pooled._keras_history.operation.name]
    for lay in model.layers:
        lay.trainable = False
    c = int(new_probs.shape[-1])
    top = layers.Reshape((1, c, 1), name=f"{exit_name}_conf_reshape")(new_probs)
    top = layers.MaxPooling2D((1, c), name=f"{exit_name}_conf_max")(top)            # the max softmax itself
    top = layers.Flatten(name=f"{exit_name}_conf_flatten")(top)
    a = layers.Dense(hidden, name=f"{exit_name}_conf_feat")(new_pooled)
    b = layers.Dense(hidden, use_bias=False, name=f"{exit_name}_conf_prob")(new_probs)
    m = layers.Dense(hidden, use_bias=False, name=f"{exit_name}_conf_top")(top)
    h = layers.Add(name=f"{exit_name}_conf_add")([a, b])
    h = layers.ReLU(name=f"{exit_name}_conf_relu")(layers.Add(name=f"{exit_name}_conf_add2")([h, m]))  # 2-input ADDs
    dense = layers.Dense(2, name=f"{exit_name}_conf_dense")
    logits = dense(h)
    out = layers.Softmax(name=f"{exit_name}_confidence")(logits)
    conf = keras.Model(inp, out, name=f"{exit_name}_confidence")
    if init == "max_softmax":
        _init_as_max_softmax(conf, exit_name, hidden)
    return conf, point


def _init_as_max_softmax(conf, exit_name: str, hidden: int, slope: float = 8.0, midpoint: float = 0.7) -> None:
    """Start the branch as a monotone function of the max softmax (hidden unit 0 = slope x max, P(right) =
    sigmoid(2 slope (max - midpoint))), the other units and the feature paths small, so that training on a few
    hundred examples refines the max-softmax ranking instead of starting from a random one."""
    rng = np.random.default_rng(0)
    get = lambda n: conf.get_layer(f"{exit_name}_conf_{n}")   # noqa: E731
    fk, fb = get("feat").get_weights()
    get("feat").set_weights([rng.normal(0, 0.01, fk.shape).astype(np.float32), np.zeros_like(fb)])
    get("prob").set_weights([np.zeros_like(get("prob").get_weights()[0])])
    tk = rng.normal(0, 0.01, (1, hidden)).astype(np.float32)
    tk[0, 0] = slope
    get("top").set_weights([tk])
    dk = rng.normal(0, 0.01, (hidden, 2)).astype(np.float32)
    dk[0] = [-1.0, 1.0]
    get("dense").set_weights([dk, np.array([slope * midpoint, -slope * midpoint], np.float32)])


def _fit(run: Run, model, exit_name: str, x: np.ndarray, y: np.ndarray, *, hidden: int, epochs: int,
         batch_size: int, learning_rate: float, seed: int, validation=None, init: str = "max_softmax",
         log: Callable[[str], None] = print):
    """Train the confidence branch of `exit_name` on (x, y) (right/wrong labels from the exit's own float
    prediction; classes weighted so that right and wrong count alike). Returns (conf model, point, history,
    right fraction, point features of x)."""
    import keras

    from tinyexit.research.augment import _Features

    keras.utils.set_random_seed(seed)
    conf_model, point = build_confidence_model(model, exit_name, hidden, init=init)
    from tinyexit.models import output_names
    idx = output_names(model).index(exit_name)
    feats = _Features(model, point, x)
    if feats.cached is None:
        raise TinyexitError("the exit point activations of the confidence training data do not fit in memory; "
                            "train the confidence head on fewer examples (--confidence-fraction)")
    p_tr = model.predict(x, batch_size=256, verbose=0)[idx]
    t_tr = (np.argmax(p_tr, -1) == y).astype(np.int64)
    pos = max(1, int(t_tr.sum()))
    neg = max(1, int(len(t_tr) - t_tr.sum()))
    weights = {0: len(t_tr) / (2 * neg), 1: len(t_tr) / (2 * pos)}
    val = None
    if validation is not None:
        xv, yv = validation
        fv = _Features(model, point, xv)
        if fv.cached is not None:
            p_va = model.predict(xv, batch_size=256, verbose=0)[idx]
            val = (fv.cached, (np.argmax(p_va, -1) == yv).astype(np.int64))
    steps = max(1, int(np.ceil(len(x) / batch_size))) * epochs
    conf_model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps)),
                       loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    log(f"training the confidence branch of {exit_name} ({len(x)} examples, {t_tr.mean():.2f} of them right at "
        f"the exit; {epochs} epochs)")
    hist = conf_model.fit(feats.cached, t_tr, validation_data=val, epochs=epochs, batch_size=batch_size,
                          class_weight=weights, verbose=0)
    return conf_model, point, hist, float(t_tr.mean()), feats.cached


def _save_keras(run: Run, exit_name: str, conf_model) -> None:
    run.confidence_dir.mkdir(exist_ok=True)
    with atomic_path(run.confidence_file(exit_name, ".keras")) as tmp:
        conf_model.save(tmp)


def train_confidence(run_dir: str | Path, *, exit_name: str | None = None, hidden: int = 8, epochs: int = 10,
                     batch_size: int = 100, learning_rate: float = 3e-3, seed: int = 0, quantize: bool | None = None,
                     max_drop: float = 0.01, log: Callable[[str], None] = print) -> dict:
    """Train the confidence branch of `exit_name` (default: the first early exit) on the training split and
    write RUN/confidence/ (<exit>.keras, <exit>.json (what it was trained on), <exit>.tflite when `quantize`,
    report.json with the comparison against max-softmax). quantize None: when the run has been quantized
    (RUN/quant/manifest.json). For the exit policy of the firmware use `ensure_confidence` /
    `tinyexit calibrate RUN --policy confidence`."""
    from tinyexit.models import layer_macs

    run = Run(run_dir)
    meta = run.model_json()
    exit_name = exit_name or first_early_exit(meta)
    if quantize is None:
        quantize = run.is_quantized()
    model = run.load_model()
    x, y = run.split("train")
    conf_model, point, hist, right, feats = _fit(run, model, exit_name, x, y, hidden=hidden, epochs=epochs,
                                                 batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                                                 validation=run.split("validation"), log=log)
    _save_keras(run, exit_name, conf_model)
    write_json(run.confidence_file(exit_name, ".json"),
               {"exit": exit_name, "point": point, "hidden": hidden, "epochs": epochs, "seed": seed,
                "train_split": "train", "train_indices": None, "train_size": int(len(y))})
    report = {"exit": exit_name, "point": point, "hidden": hidden, "epochs": epochs,
              "params": int(sum(np.prod(w.shape) for lay in conf_model.layers if "_conf_" in lay.name
                                for w in lay.weights)),
              "train_right_fraction": right,
              "history": {k: [float(v) for v in vals] for k, vals in hist.history.items()}}
    if quantize:
        quantize_confidence(run, exit_name, conf_model=conf_model, representative=feats)
        report["tflite"] = f"{exit_name}.tflite"
    branch_macs = int(sum(layer_macs(lay) for lay in conf_model.layers if "_conf_" in lay.name))
    report["branch_macs"] = branch_macs
    report["float"] = compare_run(run, exit_name, source="float", conf_model=conf_model, max_drop=max_drop,
                                  branch_macs=branch_macs)
    if quantize:
        report["int8"] = compare_run(run, exit_name, source="int8", max_drop=max_drop, branch_macs=branch_macs)
    write_json(run.confidence_report_path, report)
    log(format_comparison(report))
    return report


def held_out_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, calibration indices) of a split of n inputs: a seeded permutation, the first
    round(fraction * n) train the confidence head, the rest calibrate its threshold (disjoint, both sorted)."""
    if not 0 < fraction < 1:
        raise TinyexitError(f"--confidence-fraction must lie strictly between 0 and 1 (got {fraction})")
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(fraction * n))
    if k < 1 or k >= n:
        raise TinyexitError(f"a fraction of {fraction} of {n} validation inputs leaves nothing to train on or "
                            f"to calibrate with; use a fraction between {1 / n:.3f} and {1 - 1 / n:.3f}")
    return np.sort(order[:k]), np.sort(order[k:])


def ensure_confidence(run_dir: str | Path, *, train_on: str = "validation", fraction: float = 0.5, hidden: int = 8,
                      epochs: int = 30, batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0,
                      init: str = "max_softmax", retrain: bool = False, log: Callable[[str], None] = print) -> dict[str, dict]:
    """A confidence head per early exit of the quantized run, as the firmware runs it: RUN/confidence/<exit>.keras,
    <exit>.tflite (int8, input quantization = the exit point's) and <exit>.json (what it was trained on).
    Reused when present (unless `retrain`; re-quantized when older than RUN/quant); otherwise trained on
    `train_on`: "validation" (the first `fraction` of a seeded permutation of the validation split: data the
    exit head never saw; the rest is left for calibration) or "train" (the training split, on which the
    exit head is over-confident). Returns {exit name: metadata (with "tflite": path)}."""
    run = Run(run_dir)
    if train_on not in ("validation", "train"):
        raise TinyexitError(f"--confidence-train must be 'validation' or 'train', not {train_on!r}")
    man = run.manifest()
    early = [e["name"] for e in man["exits"] if e.get("file")]
    if not early:
        raise TinyexitError("the run has no early exit; attach one with `tinyexit augment` first")
    out: dict[str, dict] = {}
    model = None
    for name in early:
        keras_path, meta_path = run.confidence_file(name, ".keras"), run.confidence_file(name, ".json")
        tfl = run.confidence_file(name, ".tflite")
        if not retrain and keras_path.is_file():
            import json
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else \
                {"exit": name, "train_split": "train", "train_indices": None}   # written by an older train_confidence
            newest = max(run.quant.manifest_path.stat().st_mtime, keras_path.stat().st_mtime)
            if not tfl.is_file() or tfl.stat().st_mtime < newest:
                log(f"quantizing the confidence head of {name} ({tfl})")
                quantize_confidence(run, name)
            log(f"reusing the confidence head of {name} (trained on the {meta['train_split']} split; "
                f"--retrain trains a new one)")
        else:
            model = model or run.load_model()
            if train_on == "validation":
                xv, yv = run.split("validation")
                tr, _ = held_out_split(len(yv), fraction, seed)
                x, y, indices = xv[tr], yv[tr], [int(i) for i in tr]
            else:
                x, y = run.split("train")
                indices = None
            conf_model, point, hist, right, feats = _fit(run, model, name, x, y, hidden=hidden, epochs=epochs,
                                                         batch_size=batch_size, learning_rate=learning_rate,
                                                         seed=seed, init=init, log=log)
            _save_keras(run, name, conf_model)
            quantize_confidence(run, name, conf_model=conf_model)
            meta = {"exit": name, "point": point, "hidden": hidden, "epochs": epochs, "seed": seed, "init": init,
                    "learning_rate": learning_rate,
                    "train_split": train_on, "train_fraction": fraction if train_on == "validation" else None,
                    "train_indices": indices, "train_size": int(len(y)), "train_right_fraction": right,
                    "final_loss": float(hist.history["loss"][-1])}
            write_json(meta_path, meta)
        out[name] = {**meta, "tflite": tfl}
    return out


class Int8ConfidenceChain:
    """The run's int8 segments and exit heads with each early exit's int8 confidence model on the same
    boundary tensor, on tflite_micro (the firmware's bit-exact oracle)."""

    def __init__(self, run_dir: str | Path, files: dict[str, str | Path]):
        from tinyexit.quantize import TflmModel, tensor_qparams
        run = Run(run_dir)
        self.manifest = run.manifest()
        self.pipe = run.oracle()
        early = [e for e in self.manifest["exits"] if e.get("file")]
        missing = [e["name"] for e in early if e["name"] not in files]
        if missing:
            raise TinyexitError(f"no confidence model for early exit(s) {missing}; re-run "
                                f"`tinyexit calibrate {run} --policy confidence`")
        data = [Path(files[e["name"]]).read_bytes() for e in early]
        self.conf = [TflmModel(b) for b in data]
        self.conf_qparams = [tensor_qparams(b, "output") for b in data]
        from tinyexit.quantize import count_macs
        self.conf_macs = [int(count_macs(b)) for b in data]

    def run_q(self, q: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """int8 model inputs -> (int8 output of every exit, final last; int8 output of every confidence model)."""
        from tinyexit.quantize import seg_out_shape
        p = self.pipe
        q = np.asarray(q, np.int8).reshape((len(q),) + tuple(p.segments[0].input_shape[1:]))
        acts = [q]
        for seg in p.segments:
            acts.append(seg.run(acts[-1])[0].reshape((len(q),) + tuple(seg_out_shape(seg))))
        outs = [np.asarray(h.run(acts[k + 1])[0], np.int8).reshape(len(q), -1)
                for h, k in zip(p.heads, p.after_segment)]
        confs = [np.asarray(c.run(acts[k + 1])[0], np.int8).reshape(len(q), -1)
                 for c, k in zip(self.conf, p.after_segment)]
        return outs + [acts[-1].reshape(len(q), -1)], confs

    def run(self, x: np.ndarray):
        from tinyexit.quantize import quantize_array
        return self.run_q(quantize_array(x, self.pipe.input_qparams))

    def macs_to_exit(self) -> list[int]:
        """MACs of an inference ending at each exit under the confidence policy as the firmware runs it: the
        segments up to the exit, every confidence model tried so far, and the answering exit's head (run only
        when its confidence passes); the final exit pays every segment and every confidence model."""
        man = self.manifest
        seg = [int(s["macs"]) for s in man["segments"]]
        early = [e for e in man["exits"] if e.get("file")]
        res = []
        for k, e in enumerate(early):
            res.append(sum(seg[:e["after_segment"] + 1]) + sum(self.conf_macs[:k + 1]) + int(e["macs"]))
        res.append(sum(seg) + sum(self.conf_macs))
        return res


def quantize_confidence(run_dir: str | Path, exit_name: str, *, conf_model=None, representative=None,
                        num_calibration: int = 500) -> bytes:
    """int8 .tflite of the confidence model whose input quantization is the exit point's (from the run's quant
    manifest: run `tinyexit quantize` first)."""
    import keras

    from tinyexit.quantize import QParams, convert_int8, set_input_qparams

    run = Run(run_dir)
    man = run.manifest()
    ex = next((e for e in man["exits"] if e["name"] == exit_name), None)
    if ex is None or ex["file"] is None:
        raise TinyexitError(f"RUN/quant has no early exit '{exit_name}'; re-run `tinyexit quantize {run}`")
    seg = man["segments"][ex["after_segment"]]
    if conf_model is None:
        import tinyexit.models  # noqa: F401
        conf_model = keras.models.load_model(run.confidence_file(exit_name, ".keras"), compile=False)
    if representative is None:
        from tinyexit.research.augment import _Features
        x, _ = run.split("train")
        pick = np.sort(np.random.default_rng(0).choice(len(x), min(num_calibration, len(x)), replace=False))
        representative = _Features(run.load_model(), ex_point(run, exit_name), x[pick]).cached
    rep = np.asarray(representative)[:num_calibration]
    tfl = set_input_qparams(convert_int8(conf_model, rep), QParams.of(seg["output"]))
    write_bytes(run.confidence_file(exit_name, ".tflite"), tfl)
    return tfl


def ex_point(run: Run | Path, exit_name: str) -> str:
    return next(e["point"] for e in as_run(run).model_json()["exits"] if e["name"] == exit_name)


__all__ = ["train_confidence", "ensure_confidence", "held_out_split", "Int8ConfidenceChain", "build_confidence_model",
           "quantize_confidence"]
