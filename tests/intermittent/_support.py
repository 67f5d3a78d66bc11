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


def build_real_board_runtime(board: str, standin: Path, out: Path, granularity_c: str, defines=None):
    """The checkpointing runtime + the board's NVM adapter + the POF-comparator hooks + the stand-in model,
    linked into a firmware for a real nRF52840 board (`granularity_c`: the C initialiser's mode, e.g.
    "TX_CKPT_LAYERS"). Built, not run: no board here."""
    from tinyexit.build import build_firmware
    from tinyexit.intermittent.host import RUNTIME_DIR, render_pipeline
    gen = out / "gen"
    gen.mkdir(parents=True)
    render_pipeline(STANDIN_PIPELINE, gen)
    (gen / "main.c").write_text(
        "#include \"tx_checkpoint.h\"\n#include \"tx_hal.h\"\n#include \"tx_pipeline.h\"\n"
        "void tx_rt_nrf52_init(uint32_t threshold_code);\n"
        "static int8_t in[144], out[16]; static tx_runtime_t rt;\n"
        f"int main(void) {{ tx_result_t r; tx_granularity_t g = {{{granularity_c}, 1u}}; tx_hal_init();\n"
        "  tx_rt_nrf52_init(8u); tx_pipeline_infer(&rt, &tx_pipeline, g, 1u, in, out, sizeof out, &r);\n"
        "  tx_hal_exit((int)r.exit_index); }\n")
    sources = [RUNTIME_DIR / s for s in ("tx_checkpoint.c", "tx_crc32.c", "tx_pipeline.c", "tx_nvm_board.c",
                                         "tx_rt_nrf52.c")]
    return build_firmware(board, sources + [gen / "tx_pipeline_config.c", gen / "main.c", standin / "standin_model.c"],
                          out / "fw", include_dirs=[RUNTIME_DIR, standin, gen], defines=defines or {})
