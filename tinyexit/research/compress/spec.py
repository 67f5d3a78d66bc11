"""A Keras functional model as plain data, so a process running another Keras (tf_keras for tfmot) can
rebuild it layer by layer: layer class, its structural configuration, the names of the layers it reads,
and the weights per layer (numpy, in get_weights() order, which Keras 3 and tf_keras share for the layers
the builders use: Conv2D, DepthwiseConv2D, BatchNormalization, Dense)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinyexit.errors import TinyexitError

# config keys that describe initialisation or numerics policies, not the graph: the weights are set after
_DROP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_DROP_KEYS = {"dtype", "lora_rank", "lora_alpha", "quantization_config", "build_config", "seed"}


def _clean(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in _DROP_KEYS and not k.endswith(_DROP_SUFFIXES)}


def export_spec(model) -> dict:
    """{"name", "layers": [{"name", "class", "config", "inbound": [names]}], "outputs": [names]} of a
    functional Keras 3 model; every layer must be used once (the builders' models are)."""
    layers = []
    for lay in model.layers:
        nodes = lay._inbound_nodes
        if len(nodes) != 1:
            raise TinyexitError(f"layer '{lay.name}' is used {len(nodes)} times; compress handles functional "
                                f"models whose layers are used once")
        inbound = [t._keras_history.operation.name for t in nodes[0].input_tensors]
        cls = type(lay).__name__
        cfg = _clean(lay.get_config())
        if cls == "InputLayer":
            cfg = {"shape": list(lay.output.shape[1:]), "name": lay.name}
        layers.append({"name": lay.name, "class": cls, "config": cfg, "inbound": inbound})
    return {"name": model.name, "layers": layers,
            "outputs": [t._keras_history.operation.name for t in model.outputs]}


def export_weights(model) -> dict[str, np.ndarray]:
    return {f"{lay.name}/{i}": np.asarray(w) for lay in model.layers for i, w in enumerate(lay.get_weights())}


def weights_by_layer(flat: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    out: dict[str, list] = {}
    for key in sorted(flat, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
        name, _ = key.rsplit("/", 1)
        out.setdefault(name, []).append(flat[key])
    return out


def load_weights_into(model, flat: dict[str, np.ndarray]) -> None:
    """Set the weights of the layers named in `flat` (all of the model's weighted layers must be there)."""
    by = weights_by_layer(flat)
    for lay in model.layers:
        if lay.get_weights():
            if lay.name not in by:
                raise TinyexitError(f"no trained weights came back for layer '{lay.name}'")
            lay.set_weights(by[lay.name])


def write_spec(path: Path, spec: dict) -> None:
    Path(path).write_text(json.dumps(spec))


def read_spec(path: Path) -> dict:
    return json.loads(Path(path).read_text())
