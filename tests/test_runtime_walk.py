"""The runtime's walk (firmware_templates/runtime/tx_checkpoint.c) with checkpointing off, as the bench app runs
it: a confidence stage decides whether its exit head runs (and the pipeline then answers there), a chained
library runs in place with no boundary buffer (refused with checkpoints), the stage hook sees exactly the stages
that run. Oracle: the stand-in models (tests/walk_model/walk_model.c) computed again in numpy."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_program
from tests.standin_library import standin_library
from tinyexit import toolchain

HERE = Path(__file__).parent / "walk_model"
RUNTIME = toolchain.TEMPLATES / "runtime"
MODELS = {"seg0": (16, 8), "conf1": (8, 2), "exit1": (8, 4), "seg1": (8, 4)}


def _weight(layer: int, o: int, i: int) -> int:
    m = 0xFFFFFFFF
    h = ((layer * 2654435761) ^ (o * 40503) ^ (i * 2246822519)) & m
    h ^= h >> 13
    h = (h * 3266489917) & m
    h ^= h >> 16
    return int(np.int8(np.uint8(h & 0xFF)))


def _dense(layer: int, x: np.ndarray, n_out: int, shift: int) -> np.ndarray:
    w = np.array([[_weight(layer, o, i) for i in range(len(x))] for o in range(n_out)], np.int64)
    return np.clip((w @ x.astype(np.int64) + layer * 37) >> shift, -128, 127).astype(np.int8)


@pytest.fixture(scope="module")
def walk_exe(tmp_path_factory):
    require_program("gcc", "apt-get install -y gcc")
    tmp = tmp_path_factory.mktemp("walk")
    lib = standin_library(HERE, tmp / "lib", MODELS, arena_size=64)
    srcs = [lib / "walk_model.c", HERE / "walk_main.c",
            *(RUNTIME / s for s in ("tx_checkpoint.c", "tx_crc32.c", "tx_rt_off.c"))]
    return toolchain.compile_host(srcs, tmp / "walk_host", include_dirs=[lib, RUNTIME])


def test_init_refuses_a_chained_pipeline_with_checkpoints_and_a_misplaced_confidence_stage(walk_exe):
    out = subprocess.run([walk_exe, "init"], capture_output=True, text=True, check=True).stdout.split()
    # TX_OK 0, TX_ERR_CONFIG -1; an unchained pipeline with checkpoints passes the check and fails at the NVM
    # (-2: this build has none), a chained one is refused before
    assert out == ["off=0", "chained_off=0", "chained_layers=-1", "layers=-2", "bad_confidence=-1"]


@pytest.mark.parametrize("chained", [0, 1])
def test_confidence_stage_decides_whether_the_head_runs(walk_exe, chained):
    rng = np.random.default_rng(5)
    for x in rng.integers(-128, 128, (6, 16)).astype(np.int8):
        b = _dense(1, x, 8, 9)
        conf, head, final = _dense(4, b, 2, 7), _dense(2, b, 4, 7), _dense(3, b, 4, 7)
        for threshold in ("none", str(int(conf[1])), str(int(conf[1]) + 1)):
            r = subprocess.run([walk_exe, "run", threshold, str(chained)], input=x.tobytes(), capture_output=True,
                               check=True).stdout.decode().split()
            if threshold == "none":          # no policy: the confidence model and its head are skipped
                want = ["exit=1", "stages=b0,e0,b3,e3", "out=" + final.tobytes().hex()]
            elif int(threshold) <= conf[1]:  # P(right) passes: the head runs and answers
                want = ["exit=0", "stages=b0,e0,b1,e1,b2,e2", "out=" + head.tobytes().hex()]
            else:                            # it does not: the head is skipped, the final segment answers
                want = ["exit=1", "stages=b0,e0,b1,e1,b3,e3", "out=" + final.tobytes().hex()]
            assert r == want, (threshold, chained)
