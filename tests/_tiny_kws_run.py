"""A tiny keyword-spotting run folder, made in seconds: an untrained two-exit CNN on 49x10x1 MFCC inputs with
the 12 classes of the keyword task, quantized by `quantize_run` and calibrated by `calibrate_run` on stand-in
splits (random features, served through a replaced `tinyexit.run.load_split`). The stream app's tests use it:
they compare implementations of one pipeline with each other, not accuracy."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "_silence_", "_unknown_"]


def _split(n: int, seed: int):
    rng = np.random.default_rng(seed)
    # MFCC-like ranges: c0 large and negative (log energies), the others around 0
    x = rng.normal(0.0, 4.0, (n, 49, 10, 1)).astype(np.float32)
    x[..., 0, 0] -= 30.0
    return x, rng.integers(0, len(CLASSES), n).astype(np.int64)


def stand_in_splits() -> dict:
    """The stand-in train / validation / test splits (random features, random labels)."""
    return {"train": _split(120, 1), "validation": _split(120, 2), "test": _split(120, 3)}


def make_tiny_kws_run(run: Path) -> Path:
    import keras
    import pytest

    import tinyexit.run
    from tinyexit.io import write_json
    from tinyexit.models import exits_with_macs
    from tinyexit.policy.calibrate import calibrate_run
    from tinyexit.quantize import quantize_run

    keras.utils.set_random_seed(0)
    inp = keras.Input((49, 10, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="block1")(inp)
    e = keras.layers.GlobalAveragePooling2D(name="exit1_pool")(h)
    e = keras.layers.Dense(len(CLASSES), activation="softmax", name="exit1")(e)
    f = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="block2")(h)
    f = keras.layers.GlobalAveragePooling2D(name="final_pool")(f)
    f = keras.layers.Dense(len(CLASSES), activation="softmax", name="final")(f)
    model = keras.Model(inp, [e, f])
    run.mkdir(parents=True, exist_ok=True)
    model.save(run / "model.keras")
    write_json(run / "model.json", {"task": "kws", "input_shape": [49, 10, 1], "classes": CLASSES,
                                    "exits": exits_with_macs(model), "data": {"kind": "test"}})
    data = stand_in_splits()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tinyexit.run, "load_split", lambda r, split: data[split])
        quantize_run(run, num_calibration=60, num_eval=60)
        calibrate_run(run, epsilon=0.5)
    return run
