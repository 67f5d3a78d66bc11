"""Helpers for the checkpointing runtime tests: the stand-in model library (standin/standin_model.c with a
tx_model.h rendered from the generator's template, so the same C API as a generated library) and inputs."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tinyexit.intermittent import random_inputs  # noqa: F401  (the tests take it from here)
from tinyexit.intermittent.host import HostTarget
from tinyexit.pipeline import EXIT, SEGMENT, Pipeline, Stage

from ..standin_library import standin_library

HERE = Path(__file__).resolve().parent
# the module mark of the tests that run the runtime as firmware on QEMU
EMULATED = [pytest.mark.emulator,
            pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                               reason="needs qemu-system-arm and arm-none-eabi-gcc (apt-get install -y "
                                      "--no-install-recommends qemu-system-arm gcc-arm-none-eabi "
                                      "libnewlib-arm-none-eabi)")]
STANDIN_PIPELINE = Pipeline((Stage("seg0", SEGMENT), Stage("exit0", EXIT, 0), Stage("seg1", SEGMENT),
                             Stage("exit1", EXIT, 1), Stage("seg2", SEGMENT, 2)), input_size=144)
STANDIN_INPUT = 144
STANDIN_UNITS = 43        # seg0 12+12+6, seg1 6+3, seg2 3+1 (exit heads skipped without a policy)
STANDIN_MODELS = {"seg0": (144, 144), "exit0": (144, 5), "seg1": (144, 72), "exit1": (72, 5), "seg2": (72, 5)}


def make_standin(out_dir: Path) -> Path:
    """The stand-in library in `out_dir` (a folder like a generated library: tx_model.h and the .c)."""
    return standin_library(HERE / "standin", out_dir, STANDIN_MODELS, arena_size=4096, chain=STANDIN_PIPELINE.chain)


def make_target(exe, tmp_path, name="nvm.bin") -> HostTarget:
    t = HostTarget(exe, tmp_path / name)
    t.erase_nvm()
    return t


def make_tiny_branch(root: Path) -> Path:
    """RUN with model.keras, model.json and RUN/branch/ (train_branch, no measuring): returns RUN."""
    import json

    import keras
    import numpy as np

    from tinyexit.models import DSCNNConfig, build_dscnn, exit_spec
    from tinyexit.branch import BranchConfig, train_branch

    def data(n, seed):
        rng = np.random.default_rng(seed)
        templates = np.random.default_rng(99).normal(size=(12, 49, 10, 1)).astype(np.float32) * 3
        y = rng.integers(0, 12, size=n)
        return (templates[y] + rng.normal(size=(n, 49, 10, 1)).astype(np.float32) * 1.5).astype(np.float32), y

    keras.utils.set_random_seed(0)
    model = build_dscnn(DSCNNConfig(filters=16, blocks=3, exits_after=(2,), head_channels=8))
    x, y = data(400, 0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=["sparse_categorical_crossentropy"] * 2)
    model.fit(x, [y, y], epochs=2, batch_size=50, verbose=0)
    run = root / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "model.json").write_text(json.dumps({
        "task": "kws", "input_shape": [49, 10, 1], "classes": [f"c{i}" for i in range(12)],
        "exits": exit_spec(model), "data": {"source": "test"}}))
    splits = {"train": (x, y), "validation": data(60, 1), "test": data(40, 2)}
    cfg = BranchConfig(epochs=10, batch_size=50, learning_rate=2e-2, head_epochs=0, head_channels=8,
                       num_calibration=60)
    train_branch(run, config=cfg, data=splits, measure=False)
    keras.backend.clear_session()
    return run
