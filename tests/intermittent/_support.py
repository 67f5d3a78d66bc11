"""Helpers for the checkpointing runtime tests: the stand-in model library (standin/, same C API as a
generated library) and inputs."""
from __future__ import annotations

import random
from pathlib import Path

from tinyexit.intermittent.host import EXIT, SEGMENT, HostTarget, Stage

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standin"
STANDIN_STAGES = [Stage("seg0", SEGMENT), Stage("exit0", EXIT, 0), Stage("seg1", SEGMENT),
                  Stage("exit1", EXIT, 1), Stage("seg2", SEGMENT, 2)]
STANDIN_INPUT = 144
STANDIN_UNITS = 43        # seg0 12+12+6, seg1 6+3, seg2 3+1 (exit heads skipped without a policy)


def make_target(exe, tmp_path, name="nvm.bin") -> HostTarget:
    t = HostTarget(exe, tmp_path / name)
    t.erase_nvm()
    return t


def random_inputs(n: int, size: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(size)) for _ in range(n)]
