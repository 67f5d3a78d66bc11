"""Power-failure injection for the checkpointing runtime (firmware_templates/runtime/).

    lib_dir, pipeline = prepare_library(target, out_dir)   RUN dir | MODEL.tflite | generated library dir
    exe = build_host(lib_dir, pipeline, out_dir)             runtime + host NVM HAL (mmap file) + model
    report = run_campaign(HostTarget(exe, nvm), inputs, cuts=200, seed=0, granularity=Granularity.parse("units:5"))
    reports = powerfail(target, cuts=200, granularities=["layer", "units:5"])   all of the above

A campaign cuts the power after k NVM events (inside checkpoint writes) or k work units (between them),
reboots with the NVM kept and RAM lost until the result is committed, and compares the committed bytes
with the uninterrupted run; see campaign.py. The emulated campaign (QEMU, exact instruction-count cuts) is
in emulated.py. The energy-adaptive shared exit branch as a checkpointed pipeline (seg, pool, ..., branch) and
its campaigns (`tinyexit powerfail RUN --branch`) are in branch.py.
"""
from __future__ import annotations

import functools
import os
import random
from pathlib import Path
from typing import Sequence

from tinyexit.errors import TinyexitError
from tinyexit.run import Run
from tinyexit.intermittent import fanout
from tinyexit.intermittent.campaign import replay, run_campaign, uninterrupted
from tinyexit.intermittent.report import CampaignReport, Failure, Oracle
from tinyexit.intermittent.host import Boot, Granularity, HostTarget, build_host, render_pipeline
from tinyexit.pipeline import Pipeline, Stage

__all__ = ["CampaignReport", "Failure", "Oracle", "replay", "run_campaign", "uninterrupted", "Boot", "Granularity",
           "HostTarget", "Pipeline", "Stage", "build_host", "render_pipeline", "prepare_library", "powerfail",
           "random_inputs", "tflm_reference"]


def prepare_library(target: str | os.PathLike, out_dir: str | os.PathLike,
                    kernels: str = "reference") -> tuple[Path, Pipeline]:
    """The generated C library and its pipeline for `target`: a run folder (RUN/quant/manifest.json), a
    .tflite (one segment), or an already generated library folder (described by its report.json, used as it
    is). `kernels`: the kernel variant of a library generated here (the emulated board's: Board.kernels)."""
    target, out_dir = Path(target), Path(out_dir)
    if target.is_dir() and (target / "tx_model.h").is_file():
        return target, Pipeline.from_library(target)
    from tinyexit.codegen import generate
    lib = out_dir / "lib"
    if target.is_dir():
        run = Run(target)
        pipe = Pipeline.from_manifest(run.manifest(), where=str(target))
        generate(run.quant_models(), lib, measure=False, compare_tflm=False, kernels=kernels)
        return lib, pipe.with_library(lib)
    if target.suffix == ".tflite" and target.is_file():
        generate({target.stem: target}, lib, measure=False, compare_tflm=False, kernels=kernels)
        return lib, Pipeline.from_library(lib)
    raise TinyexitError(f"{target} is neither a run folder, a .tflite file nor a generated library folder "
                        "(one with tx_model.h)")


def tflm_reference(target: str | os.PathLike):
    """reference(input bytes) -> [int8 output of each exit] by TFLM (tflite_micro.runtime) on the int8 segments
    and heads of a run folder, or on one .tflite; None when `target` is a generated library."""
    import numpy as np
    target = Path(target)
    if target.is_dir() and Run(target).is_quantized():
        run = Run(target)
        pipe = run.oracle()
        shape = tuple(run.manifest()["segments"][0]["input_shape"])

        def ref(x: bytes) -> list[bytes]:
            q = np.frombuffer(x, np.int8).reshape((1,) + shape)
            return [np.asarray(o[0], np.int8).tobytes() for o in pipe.run_q(q)]
        return ref
    if target.suffix == ".tflite":
        from tinyexit.conformance import tflm_outputs
        from tflite_micro.python.tflite_micro import runtime
        shape = tuple(int(d) for d in runtime.Interpreter.from_file(str(target)).get_input_details(0)["shape"][1:])

        def ref1(x: bytes) -> list[bytes]:
            return [tflm_outputs(target, np.frombuffer(x, np.int8).reshape((1,) + shape))[0].tobytes()]
        return ref1
    return None


def random_inputs(n: int, size: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(size)) for _ in range(n)]


def powerfail(target: str | os.PathLike, out_dir: str | os.PathLike, *, cuts: int = 200, seed: int = 0,
              granularities: Sequence[str] = ("layer",), num_inputs: int = 4, broken: Sequence[str] = (),
              threshold: int | None = None, slots: int = 2, check_reference: bool = True,
              low_energy: float = 0.0, shards: int | None = 1, workers: int | None = 1,
              address: str | None = None) -> list[CampaignReport]:
    """Host campaign for each granularity over `num_inputs` random int8 inputs; for a run folder or a .tflite
    the uninterrupted runs are also checked against TFLM (check_reference). The cuts are split over `shards`
    independent shards (fanout.plan; None: one per 25 cuts), run on `workers` Ray workers (or the cluster at
    `address`); one shard is the serial campaign of `seed`."""
    out_dir = Path(out_dir)
    lib, pipe = prepare_library(target, out_dir)
    exe = build_host(lib, pipe, out_dir / ("host" + "".join(f"-{b}" for b in broken)), broken=tuple(broken),
                     slots=slots)
    inputs = random_inputs(num_inputs, pipe.input_size, seed)   # the first segment's input (the library's)
    plan = fanout.plan(seed, cuts, shards)
    reports = []
    for g in granularities:
        run = functools.partial(_host_shard, exe, out_dir, Path(target) if check_reference else None, inputs,
                                str(Granularity.parse(g)), threshold, low_energy)
        parts = fanout.run_shards(run, plan, workers=workers, address=address, desc=f"campaign {g}")
        reports.append(parts[0] if len(plan) == 1 else fanout.merge(parts, plan, seed))
    return reports


@functools.lru_cache(maxsize=4)
def tflm_reference_cached(target: Path):
    """tflm_reference, loaded once per process (campaign shards on a Ray worker share it)."""
    return tflm_reference(target)


def _host_shard(exe: Path, out_dir: Path, reference_of: Path | None, inputs: Sequence[bytes], granularity: str,
                threshold: int | None, low_energy: float, shard: "fanout.Shard") -> CampaignReport:
    """One shard of a host campaign (a Ray task or a call here): its own NVM file and work folder."""
    work = out_dir if shard.count == 1 else out_dir / shard.name
    work.mkdir(parents=True, exist_ok=True)
    g = Granularity.parse(granularity)
    return run_campaign(HostTarget(exe, work / "nvm.bin"), inputs, cuts=shard.cuts, seed=shard.seed,
                        granularity=g, threshold=threshold, work_dir=work / f"campaign-{str(g).replace(':', '')}",
                        reference=tflm_reference_cached(reference_of) if reference_of else None, low_energy=low_energy)
