"""The tfmot part of `tinyexit compress`, run in a child process with legacy Keras (tinyexit.legacy_keras):

    python -m tinyexit.research.compress.worker JOB_DIR

JOB_DIR holds spec.json + weights.npz (the Keras-3 model as data, tinyexit.research.compress.spec), data.npz
(x, y, xv, yv) and job.json (target sparsity, epochs, batch size, learning rate, loss weights, seed).
The model is rebuilt in tf_keras, pruned to the target sparsity with `prune_low_magnitude` (polynomial
decay schedule, Conv2D / DepthwiseConv2D / Dense kernels of backbone and exit heads) and `strip_pruning`,
then trained quantization-aware with `quantize_apply` (pruning-preserving 8-bit scheme; the custom
ChannelSlice layer is annotated with a no-op quantize config: it only moves values). Writes pruned.npz
(the stripped pruned weights), qat.npz (the QAT-trained weights, pruning masks reapplied), qat_int8.tflite
(the QAT model converted whole with the ranges it learned) and result.json.
Progress: one line per epoch on stdout.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from tinyexit.channel_slice import channel_slice_class
from tinyexit.legacy_keras import require_legacy

PRUNABLE = ("Conv2D", "DepthwiseConv2D", "Dense")


def _keras():
    import tensorflow as tf
    return tf, tf.keras


def build_from_spec(spec: dict, keras, flat_weights: dict | None = None):
    import inspect
    ChannelSlice = channel_slice_class(keras)
    tensors = {}
    model_inputs = []
    for ls in spec["layers"]:
        cls_name, cfg = ls["class"], dict(ls["config"])
        if cls_name == "InputLayer":
            t = keras.Input(shape=tuple(cfg["shape"]), name=ls["name"])
            model_inputs.append(t)
            tensors[ls["name"]] = t
            continue
        if cls_name == "ChannelSlice":
            layer = ChannelSlice(cfg["start"], cfg["stop"], name=ls["name"])
        else:
            cls = getattr(keras.layers, cls_name, None)
            if cls is None:
                raise SystemExit(f"TinyexitError: layer class {cls_name} ('{ls['name']}') has no tf_keras "
                                 f"equivalent; compress supports the builders' plain layers")
            allowed = set(inspect.signature(cls.__init__).parameters) | {"name", "trainable"}
            layer = cls(**{k: v for k, v in cfg.items() if k in allowed})
        ins = [tensors[n] for n in ls["inbound"]]
        tensors[ls["name"]] = layer(ins if len(ins) > 1 else ins[0])
    model = keras.Model(model_inputs, [tensors[n] for n in spec["outputs"]], name=spec["name"])
    if flat_weights is not None:
        set_flat(model, flat_weights)
    return model, ChannelSlice


def set_flat(model, flat: dict) -> None:
    by: dict[str, list] = {}
    for key in sorted(flat, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
        by.setdefault(key.rsplit("/", 1)[0], []).append(flat[key])
    for lay in model.layers:
        if lay.name in by:
            lay.set_weights(by[lay.name])


def inner_layers(model):
    """(name, layer) of the original layers inside tfmot wrappers (pruning or quantization)."""
    for lay in model.layers:
        inner = getattr(lay, "layer", None)
        yield (inner.name, inner) if inner is not None else (lay.name, lay)


def flat_weights(model) -> dict:
    out = {}
    for name, lay in inner_layers(model):
        for i, w in enumerate(lay.get_weights()):
            out[f"{name}/{i}"] = np.asarray(w)
    return out


class EpochLog:
    def __new__(cls, keras, stage: str, epochs: int):
        class _Log(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.time()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                accs = " ".join(f"{k[4:-9]} {100 * v:.1f}%" for k, v in logs.items()
                                if k.startswith("val_") and k.endswith("_accuracy"))
                print(f"  {stage} epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.3f}, "
                      f"validation {accs} ({time.time() - self.t0:.0f} s)", flush=True)
        return _Log()


def _compile(model, keras, lr, loss_weights):
    n = len(model.outputs)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=["sparse_categorical_crossentropy"] * n,
                  loss_weights=loss_weights, metrics=[["accuracy"] for _ in range(n)])


def _accuracies(model, x, y) -> list[float]:
    p = model.predict(x, batch_size=256, verbose=0)
    p = p if isinstance(p, list) else [p]
    return [float(np.mean(np.argmax(o, -1) == y)) for o in p]


def convert_qat(tf, qm) -> bytes:
    """The QAT model converted whole to full-integer int8 with the ranges it learned (its fake-quant
    nodes); no representative data: every activation range comes from training."""
    conv = tf.lite.TFLiteConverter.from_keras_model(qm)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def main(job_dir: str) -> None:
    require_legacy()
    job_dir = Path(job_dir)
    job = json.loads((job_dir / "job.json").read_text())
    spec = json.loads((job_dir / "spec.json").read_text())
    w0 = dict(np.load(job_dir / "weights.npz"))
    d = np.load(job_dir / "data.npz")
    x, y, xv, yv = d["x"], d["y"], d["xv"], d["yv"]
    tf, keras = _keras()
    import tensorflow_model_optimization as tfmot

    keras.utils.set_random_seed(int(job["seed"]))
    model, ChannelSlice = build_from_spec(spec, keras, w0)
    if job.get("freeze_bn", True):
        # Fine-tuning recipe: batch norm runs on its moving statistics (inference mode) and is not trained,
        # so training and inference see the same network while weights are removed and quantized.
        for lay in model.layers:
            if type(lay).__name__ == "BatchNormalization":
                lay.trainable = False
    n_out = len(model.outputs)
    ys, yvs = [y] * n_out, [yv] * n_out
    bs = int(job["batch_size"])
    result = {"float_accuracy_rebuilt": _accuracies(model, xv, yv)}
    print(f"rebuilt {model.name} in tf_keras: validation {result['float_accuracy_rebuilt']}", flush=True)

    # ---- magnitude pruning (one polynomial-decay schedule per layer, to its own final sparsity)
    sparsity = {k: float(v) for k, v in job["sparsity"].items()}
    pruned_flat = dict(w0)
    if any(v > 0 for v in sparsity.values()) and job["prune_epochs"] > 0:
        steps = max(1, int(np.ceil(len(x) / bs))) * int(job["prune_epochs"])
        end = max(1, int(steps * float(job["ramp_fraction"])))

        def wrap(layer):
            s = sparsity.get(layer.name, 0.0)
            if type(layer).__name__ in PRUNABLE and s > 0:
                sched = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=s, begin_step=0,
                                                             end_step=end, frequency=max(1, steps // 50))
                return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=sched)
            return layer

        pm = keras.models.clone_model(model, clone_function=wrap)
        for (n, lay) in inner_layers(pm):
            src = model.get_layer(n)
            if src.get_weights():
                lay.set_weights(src.get_weights())
        _compile(pm, keras, float(job["prune_learning_rate"]), job["loss_weights"])
        print(f"pruning ({job['prune_epochs']} epochs, prune_low_magnitude, polynomial decay to "
              f"{100 * max(sparsity.values()):.1f} % on the largest layers)", flush=True)
        pm.fit(x, ys, validation_data=(xv, yvs), epochs=int(job["prune_epochs"]), batch_size=bs, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep(),
                          EpochLog(keras, "prune", int(job["prune_epochs"]))])
        model = tfmot.sparsity.keras.strip_pruning(pm)
        pruned_flat = flat_weights(model)
    result["pruned_validation_accuracy"] = _accuracies(model, xv, yv)
    masks = {k: (v != 0) for k, v in pruned_flat.items()
             if k.endswith("/0") and sparsity.get(k[:-2], 0.0) > 0}
    result["sparsity"] = {k[:-2]: float(1 - m.mean()) for k, m in masks.items()}
    np.savez(job_dir / "pruned.npz", **pruned_flat)

    # ---- quantization-aware training
    if job["qat_epochs"] > 0:
        q = tfmot.quantization.keras

        class NoOpQuantizeConfig(q.QuantizeConfig):
            """ChannelSlice keeps the values (and their quantization) of its input."""
            def get_weights_and_quantizers(self, layer): return []
            def get_activations_and_quantizers(self, layer): return []
            def set_quantize_weights(self, layer, quantize_weights): pass
            def set_quantize_activations(self, layer, quantize_activations): pass
            def get_output_quantizers(self, layer): return []
            def get_config(self): return {}

        def annotate(layer):
            if isinstance(layer, ChannelSlice):
                return q.quantize_annotate_layer(layer, quantize_config=NoOpQuantizeConfig())
            return q.quantize_annotate_layer(layer)

        annotated = keras.models.clone_model(model, clone_function=annotate)
        for (n, lay) in inner_layers(annotated):
            src = model.get_layer(n)
            if src.get_weights():
                lay.set_weights(src.get_weights())
        try:
            from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve \
                .default_8bit_prune_preserve_quantize_scheme import Default8BitPrunePreserveQuantizeScheme
            scheme = Default8BitPrunePreserveQuantizeScheme()
            result["qat_scheme"] = "Default8BitPrunePreserveQuantizeScheme"
        except ImportError:
            scheme = None
            result["qat_scheme"] = "default 8-bit (masks reapplied)"
        with q.quantize_scope({"NoOpQuantizeConfig": NoOpQuantizeConfig, "ChannelSlice": ChannelSlice}):
            qm = q.quantize_apply(annotated, scheme) if scheme is not None else q.quantize_apply(annotated)
        _compile(qm, keras, float(job["qat_learning_rate"]), job["loss_weights"])
        print(f"quantization-aware training ({job['qat_epochs']} epochs, {result['qat_scheme']})", flush=True)
        best = {"acc": -1.0, "w": None}

        class KeepBest(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                v = (logs or {}).get(f"val_{qm.output_names[-1]}_accuracy",
                                     (logs or {}).get("val_accuracy", -1.0)) if hasattr(qm, "output_names") else -1.0
                if v > best["acc"]:
                    best["acc"], best["w"] = v, qm.get_weights()

        qm.fit(x, ys, validation_data=(xv, yvs), epochs=int(job["qat_epochs"]), batch_size=bs, verbose=0,
               callbacks=[KeepBest(), EpochLog(keras, "QAT", int(job["qat_epochs"]))])
        if best["w"] is not None:
            qm.set_weights(best["w"])
        result["qat_fake_quant_validation_accuracy"] = _accuracies(qm, xv, yv)
        qat_flat = {}
        # A QuantizeWrapper takes the quantized variables (kernels) away from its inner layer's weight list:
        # read every original variable from the wrapper's weights by attribute name, in the original order.
        attr = lambda v: v.name.split("/")[-1].split(":")[0]  # noqa: E731
        for lay in qm.layers:
            inner = getattr(lay, "layer", None)
            if inner is None or inner.name not in {k.rsplit("/", 1)[0] for k in w0}:
                continue
            have = {attr(v): v.numpy() for v in lay.weights if v.name.startswith(f"{inner.name}/")}
            for i, v in enumerate(model.get_layer(inner.name).weights):
                key = f"{inner.name}/{i}"
                w = np.asarray(have[attr(v)])
                qat_flat[key] = w * masks[key] if key in masks else w
        missing = sorted(set(w0) - set(qat_flat))
        if missing:
            raise SystemExit(f"QAT model lost weights {missing[:5]}")
        np.savez(job_dir / "qat.npz", **qat_flat)
        # The int8 model of this step: QAT's own learned ranges (the parent cuts it at the exit points).
        (job_dir / "qat_int8.tflite").write_bytes(convert_qat(tf, qm))
        result["qat_output_names"] = [f"quant_{n}" for n in spec["outputs"]]
        print("QAT model converted to int8 with its learned ranges", flush=True)
    (job_dir / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
