"""The quantize stage: RUN/model.keras -> RUN/quant/ (int8 segments and exit heads, manifest, report)."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.io import write_bytes, write_json
from tinyexit.quantize.convert import boundary_activations, convert_int8, split_model
from tinyexit.quantize.cut import (_subgraph, count_macs, cut_tflite, find_boundary, output_order, set_input_qparams,
                                   tensor_qparams, tensor_shape)
from tinyexit.quantize.oracle import Int8Pipeline, TflmModel
from tinyexit.quantize.qparams import quantize_array

DEFAULT_NUM_CALIBRATION = 500


def quantize_model(model, points: Sequence[str], representative: np.ndarray, method: str = "cut",
                   whole: bytes | None = None) -> dict:
    """int8 pieces of `model` cut at the exit points. Returns {"segments": [bytes], "heads": [bytes],
    "boundaries": [...], "whole": bytes | None, "method": method}.

    method "cut" (default): convert the whole model once and cut its int8 graph at the exit-point tensors
        (`cut_tflite`); the pieces are the whole model's operators with its quantization, so chaining them
        gives the whole model's bytes for any graph.
    method "convert": convert each piece of `split_model` on its own (representative data: the float
        activations at its input) and write segment k's output scale/zero point into the input of segment
        k+1 and of the heads after it. Bit-exact with the whole model on DS-CNN, but not in general: the
        converter's calibration of a piece can differ from the same tensors' inside the whole model (seen
        on a residual network: 1 LSB on a third of the outputs).
    whole: an int8 .tflite of the same network converted elsewhere (a quantization-aware-trained model with
        the ranges it learned); with method "cut" it is cut instead of converting `model`."""
    rep = np.asarray(representative, np.float32)
    if method == "cut":
        return _quantize_by_cutting(model, points, rep, whole)
    if whole is not None:
        raise TinyexitError("a converted whole model can only be cut (method 'cut')")
    if method != "convert":
        raise TinyexitError(f"unknown quantization method '{method}' (cut or convert)")
    segments, heads = split_model(model, points)
    acts = boundary_activations(model, points, rep)
    seg_b = [convert_int8(segments[0], rep)] + [convert_int8(s, a) for s, a in zip(segments[1:], acts)]
    head_b = [convert_int8(h, a) for h, a in zip(heads, acts)]
    boundaries = []
    for k in range(len(points)):
        qp = tensor_qparams(seg_b[k], "output")
        rec = {"exit_point": points[k], "after_segment": k, **qp.to_json(), "adjusted": []}
        for kind, blobs, idx in (("segment", seg_b, k + 1), ("head", head_b, k)):
            own = tensor_qparams(blobs[idx], "input")
            blobs[idx] = set_input_qparams(blobs[idx], qp)
            rec["adjusted"].append({"piece": f"{kind}{idx}", "own_scale": own.scale,
                                    "own_zero_point": own.zero_point,
                                    "relative_scale_change": abs(own.scale - qp.scale) / qp.scale})
        boundaries.append(rec)
    return {"segments": seg_b, "heads": head_b, "boundaries": boundaries, "whole": None, "method": "convert"}


def _quantize_by_cutting(model, points: Sequence[str], rep: np.ndarray, whole: bytes | None = None) -> dict:
    split_model(model, points)  # refuses exit points that do not cut the Keras graph, with a clear message
    if whole is None:
        whole = convert_int8(model, rep)
    _, sg = _subgraph(whole)
    from tinyexit.models import output_names
    outs = [int(sg.Outputs(i)) for i in output_order(whole, output_names(model))]     # Keras order: exits, final last
    bounds = []
    for k, p in enumerate(points):
        shape = model.get_layer(p).output.shape[1:]
        bounds.append(find_boundary(whole, p, shape, outs[k:]))
    inp = int(sg.Inputs(0))
    starts = [inp] + bounds
    ends = bounds + [outs[-1]]
    seg_b = [cut_tflite(whole, [a], [b]) for a, b in zip(starts, ends)]
    head_b = [cut_tflite(whole, [bounds[k]], [outs[k]]) for k in range(len(points))]
    boundaries = []
    for k, (p, t) in enumerate(zip(points, bounds)):
        q = sg.Tensors(t).Quantization()
        boundaries.append({"exit_point": p, "after_segment": k, "tensor": sg.Tensors(t).Name().decode(),
                           "scale": float(q.Scale(0)), "zero_point": int(q.ZeroPoint(0))})
    return {"segments": seg_b, "heads": head_b, "boundaries": boundaries, "whole": whole, "method": "cut"}


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y)) if len(y) else float("nan")


def quantize_run(run_dir: str | os.PathLike, *, num_calibration: int = DEFAULT_NUM_CALIBRATION,
                 num_eval: int | None = None, seed: int = 0, verify_whole: bool = True,
                 method: str = "cut", whole: bytes | None = None,
                 log: Callable[[str], None] | None = None) -> dict:
    """Quantize RUN/model.keras by segments into RUN/quant/ (manifest.json, *.tflite, report.json).

    num_calibration: training inputs used as representative data; num_eval: test inputs evaluated
    (None = all); verify_whole: count test inputs on which the chained pieces and the whole int8 model
    give different bytes (must be 0); method: "cut" or "convert" (see quantize_model); whole: an int8
    .tflite of RUN's network converted elsewhere, cut instead of converting (the ranges a quantization-aware
    training learned; no calibration then). Returns the report."""
    from tinyexit.run import Run

    log = log or (lambda s: None)
    run = Run(run_dir)
    if num_calibration < 1:
        raise TinyexitError("--num-calibration must be at least 1")
    meta = run.model_json()    # checked: the final exit last, a data recipe
    model = run.load_model()
    early = meta["exits"][:-1]
    points = [e["point"] for e in early]

    x_train, _ = run.split("train")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x_train), size=min(num_calibration, len(x_train)), replace=False)
    rep = x_train[np.sort(pick)]
    if whole is None:
        log(f"int8 conversion ({method}) into {len(points) + 1} segments and {len(points)} exit heads "
            f"({len(rep)} representative inputs from the training split)")
    else:
        log(f"cutting the given int8 model into {len(points) + 1} segments and {len(points)} exit heads")
    q = quantize_model(model, points, rep, method=method, whole=whole)

    seg_macs = [count_macs(b) for b in q["segments"]]
    head_macs = [count_macs(b) for b in q["heads"]]
    names = [e["name"] for e in meta["exits"]]
    exit_macs = [sum(seg_macs[:k + 1]) + sum(head_macs[:k + 1]) for k in range(len(early))]
    exit_macs.append(sum(seg_macs) + sum(head_macs))

    manifest = {
        "segments": [{"name": f"seg{k}", "file": f"seg{k}.tflite",
                      "input_shape": tensor_shape(b, "input")[1:], "output_shape": tensor_shape(b, "output")[1:],
                      "input": tensor_qparams(b, "input").to_json(), "output": tensor_qparams(b, "output").to_json(),
                      "macs": seg_macs[k]} for k, b in enumerate(q["segments"])],
        "exits": [{"name": names[k], "file": f"{names[k]}.tflite", "after_segment": k,
                   "output": tensor_qparams(q["heads"][k], "output").to_json(), "macs": head_macs[k],
                   "macs_to_exit": exit_macs[k]} for k in range(len(early))]
                 + [{"name": names[-1], "file": None, "after_segment": len(points),
                     "output": tensor_qparams(q["segments"][-1], "output").to_json(), "macs": 0,
                     "macs_to_exit": exit_macs[-1]}],
        "no_exit_macs": sum(seg_macs),
        "classes": list(meta.get("classes", [])),
    }

    # Evaluate float and int8 on the test split.
    x_test, y_test = run.split("test")
    if num_eval is not None and num_eval < len(x_test):  # a seeded subset: the split is ordered by class
        keep = np.sort(np.random.default_rng(seed + 1).choice(len(x_test), num_eval, replace=False))
        x_test, y_test = x_test[keep], y_test[keep]
    float_out = model.predict(x_test, batch_size=256, verbose=0)
    float_out = float_out if isinstance(float_out, (list, tuple)) else [float_out]
    log(f"evaluating int8 on {len(x_test)} test inputs with tflite_micro (the firmware's oracle)")
    pipe = Int8Pipeline(q["segments"], q["heads"], list(range(len(early))))
    int8_out = pipe.run(x_test)
    report = {
        "evaluator": "tflite_micro", "method": q["method"],
        "ranges": "calibrated" if whole is None else "given (quantization-aware training)",
        "split": "test", "num_test": int(len(y_test)), "num_calibration": int(len(rep)) if whole is None else 0,
        "exits": [{"name": names[k],
                   "float_accuracy": _accuracy(np.argmax(float_out[k], -1), y_test),
                   "int8_accuracy": _accuracy(np.argmax(int8_out[k], -1), y_test),
                   "int8_float_agreement": _accuracy(np.argmax(int8_out[k], -1), np.argmax(float_out[k], -1)),
                   "macs_to_exit": exit_macs[k]} for k in range(len(names))],
        "no_exit_macs": sum(seg_macs),
        "boundaries": q["boundaries"],
    }
    if verify_whole:
        log("checking the chained pieces against the whole int8 model")
        from tinyexit.models import output_names
        whole = TflmModel(q["whole"] if q["whole"] is not None else convert_int8(model, rep),
                          output_names(model))
        ref = whole.run(quantize_array(x_test, pipe.input_qparams))
        same = np.ones(len(x_test), bool)
        for a, b in zip(int8_out, ref):
            same &= np.all(a.reshape(len(x_test), -1) == b.reshape(len(x_test), -1), axis=1)
        report["whole_model_check"] = {"inputs": int(len(x_test)), "identical": int(same.sum())}

    with run.writing_quant() as tmp:
        for k, b in enumerate(q["segments"]):
            write_bytes(tmp.piece(f"seg{k}.tflite"), b)
        for k, b in enumerate(q["heads"]):
            write_bytes(tmp.piece(f"{names[k]}.tflite"), b)
        write_json(tmp.manifest_path, manifest)
        write_json(tmp.report_path, report)
    return report