"""The shared vector of the exit branch: which exit points, and where each one's pooled features go.

Exit point k's feature map (NHWC) is averaged over H and W (its own pooling) and divided by a fixed per-point
`feature_scale` a_k (the largest pooled value seen in training), giving slice k of a fixed vector (offset =
channels of the points before it, length = its channels). Slices of points not yet computed are zero.

    default_points(model)                     every block output of the backbone (`block3_out`, `stack2_out`)
    check_points(model, points)               the points validated, in depth order
    VectorLayout                              offsets/lengths of the slices; `mask(k)`, `assemble(feats, k)`
    pooled_features(model, points, x)         float average-pooled features per point
    feature_scales(feats) / normalise(feats, scales)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tinyexit.errors import TinyexitError

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
