"""A tiny but complete run folder, made in seconds: a two-exit CNN on the offline image task (MNIST digits,
32x32x3), saved as `tinyexit train` saves it, quantized by `quantize_run` and calibrated by `calibrate_run`.
Untrained weights: the tests that use it check files and folders, not accuracy."""
from __future__ import annotations

from pathlib import Path


def make_tiny_run(run: Path) -> Path:
    import keras

    from tinyexit.io import write_json
    from tinyexit.models import exits_with_macs
    from tinyexit.policy.calibrate import calibrate_run
    from tinyexit.quantize import quantize_run

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(4, 3, strides=4, padding="same", activation="relu", name="block1")(inp)
    e = keras.layers.GlobalAveragePooling2D(name="exit1_pool")(h)
    e = keras.layers.Dense(10, activation="softmax", name="exit1")(e)
    f = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="block2")(h)
    f = keras.layers.GlobalAveragePooling2D(name="final_pool")(f)
    f = keras.layers.Dense(10, activation="softmax", name="final")(f)
    model = keras.Model(inp, [e, f])
    run.mkdir(parents=True, exist_ok=True)
    model.save(run / "model.keras")
    write_json(run / "model.json", {
        "task": "ic", "input_shape": [32, 32, 3], "classes": [str(i) for i in range(10)],
        "exits": exits_with_macs(model),
        "data": {"kind": "ic", "dir": None, "source": "mnist", "seed": 0, "train_copies": 1, "flip": False}})
    quantize_run(run, num_calibration=50, num_eval=50)
    calibrate_run(run, epsilon=0.2)
    return run
