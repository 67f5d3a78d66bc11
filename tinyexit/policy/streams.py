"""Streams for the temporal policies: sensor-like sequences made from a labelled split.

Sponner et al. evaluate difference detection and temporal patience on streams whose consecutive inputs are
correlated (the same keyword heard over several frames, the same scene seen by a camera). `scene_stream`
builds such a stream from independent examples: scenes of one class whose lengths are geometric with the
given mean, each frame a different example of that class, so a policy that relies on the temporal
correlation can be measured on it.
"""
from __future__ import annotations

import numpy as np


def scene_stream(y: np.ndarray, length: int, mean_scene: float, seed: int = 0) -> np.ndarray:
    """Indices into `y` forming a stream of `length` inputs: scenes of a random class, geometric lengths
    with mean `mean_scene` (>= 1), frames drawn without replacement within a scene while examples last."""
    if mean_scene < 1:
        raise ValueError("mean_scene must be >= 1")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    by_class = {int(c): np.flatnonzero(y == c) for c in np.unique(y)}
    classes = np.array(sorted(by_class))
    out: list[int] = []
    last = None
    while len(out) < length:
        c = int(rng.choice(classes if last is None or len(classes) == 1 else classes[classes != last]))
        n = min(int(rng.geometric(1.0 / mean_scene)), length - len(out))
        pool = by_class[c]
        pick = rng.choice(pool, size=n, replace=n > len(pool))
        out.extend(int(i) for i in pick)
        last = c
    return np.asarray(out, np.int64)
