"""Small data sets the tests make in-process: class templates plus noise (learnable in a few steps, so batch norm
and weights move away from their init), and a tiny synthesized keyword set."""
from __future__ import annotations

import numpy as np

from tests._stats import seed
from tests.conftest import require_program

NUM_CLASSES = 12


def template_data(n: int, seed: int, noise: float, num_classes: int = NUM_CLASSES,
                  shape: tuple = (49, 10, 1)) -> tuple[np.ndarray, np.ndarray]:
    """n examples: one fixed random template per class (seed 99) + Gaussian noise of std `noise`."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(99).normal(size=(num_classes, *shape)).astype(np.float32) * 3
    y = rng.integers(0, num_classes, size=n)
    x = templates[y] + rng.normal(size=(n, *shape)).astype(np.float32) * noise
    return x.astype(np.float32), y.astype(np.int64)


def small_kws_data(tmp_path_factory):
    """24 synthetic speakers x 2 takes (espeak-ng), whole speakers held out for validation and test."""
    require_program("espeak-ng", "apt-get install -y --no-install-recommends espeak-ng")
    from tinyexit.data.synth_kws import make_kws_dataset
    return make_kws_dataset(tmp_path_factory.mktemp("d") / "kws", speakers=24, takes=2, seed=seed(3),
                            val_fraction=0.2, test_fraction=0.25, progress=False)
