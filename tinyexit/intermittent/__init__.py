"""Power-failure injection for the checkpointing runtime (firmware_templates/runtime/).

    lib_dir, stages = prepare_library(target, out_dir)     RUN dir | MODEL.tflite | generated library dir
    exe = build_host(lib_dir, stages, out_dir)              runtime + host NVM HAL (mmap file) + model
    report = run_campaign(HostTarget(exe, nvm), inputs, cuts=200, seed=0, granularity=Granularity.parse("units:5"))
    reports = powerfail(target, cuts=200, granularities=["layer", "units:5"])   all of the above

A campaign cuts the power after k NVM events (inside checkpoint writes) or k work units (between them),
reboots with the NVM kept and RAM lost until the result is committed, and compares the committed bytes
with the uninterrupted run; see campaign.py. The emulated campaign (QEMU, exact instruction-count cuts) is
in emulated.py. The energy-adaptive shared exit branch as a checkpointed pipeline (seg, pool, ..., branch) and
its campaigns (`tinyexit powerfail RUN --branch`) are in branch.py.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Sequence

from tinyexit.errors import TinyexitError
from tinyexit.run import Run
from tinyexit.intermittent.campaign import CampaignReport, Failure, Oracle, replay, run_campaign, uninterrupted
from tinyexit.intermittent.host import (EXIT, SEGMENT, Boot, Granularity, HostTarget, Stage, build_host,
                                        render_pipeline)

__all__ = ["CampaignReport", "Failure", "Oracle", "replay", "run_campaign", "uninterrupted", "EXIT", "SEGMENT", "Boot",
           "Granularity", "HostTarget", "Stage", "build_host", "render_pipeline", "prepare_library",
           "stages_from_manifest", "stages_from_header", "powerfail", "random_inputs", "tflm_reference"]

_DECL = re.compile(r"^extern const tx_model_t tx_model_([A-Za-z_][A-Za-z0-9_]*);", re.M)


def stages_from_manifest(doc: dict) -> list[Stage]:
    """Pipeline order of a run's quantization manifest (`Run.manifest()`): segment 0, the exit heads after it,
    segment 1, ...; the last segment carries the final exit's index (exit indices follow the manifest's
    `exits` order)."""
    from tinyexit.codegen.cformat import c_ident
    segs = doc["segments"]
    exits = doc.get("exits", [])
    final = next((k for k, e in enumerate(exits) if not e.get("file")), len(exits))
    stages: list[Stage] = []
    for k, seg in enumerate(segs):
        last = k == len(segs) - 1
        stages.append(Stage(c_ident(seg["name"]), SEGMENT, final if last else 0))
        if not last:
            stages += [Stage(c_ident(e["name"]), EXIT, j) for j, e in enumerate(exits)
                       if e.get("file") and int(e["after_segment"]) == k]
    return stages


def stages_from_header(lib_dir: str | os.PathLike) -> list[Stage]:
    """Pipeline of a generated library from its tx_model.h, in declaration order: models whose name starts
    with 'exit' or 'head' are exit heads (numbered in order), the others segments."""
    text = (Path(lib_dir) / "tx_model.h").read_text()
    names = _DECL.findall(text)
    if not names:
        raise TinyexitError(f"{lib_dir}/tx_model.h declares no tx_model_NAME; is it a generated library?")
    stages, heads = [], 0
    for n in names:
        if n.lower().startswith(("exit", "head")):
            stages.append(Stage(n, EXIT, heads))
            heads += 1
        else:
            stages.append(Stage(n, SEGMENT, 0))
    if stages[-1].role != SEGMENT:
        raise TinyexitError(f"{lib_dir}: the last model ({stages[-1].name}) is an exit head; a pipeline ends "
                            "with a segment")
    stages[-1] = Stage(stages[-1].name, SEGMENT, heads)
    return stages


def prepare_library(target: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, list[Stage]]:
    """The generated C library and pipeline for `target`: a run folder (RUN/quant/manifest.json), a .tflite
    (one segment), or an already generated library folder (tx_model.h)."""
    target, out_dir = Path(target), Path(out_dir)
    if target.is_dir() and (target / "tx_model.h").is_file():
        return target, stages_from_header(target)
    from tinyexit.codegen import generate
    lib = out_dir / "lib"
    if target.is_dir():
        run = Run(target)
        generate(run.quant_models(), lib, measure=False, compare_tflm=False)
        return lib, stages_from_manifest(run.manifest())
    if target.suffix == ".tflite" and target.is_file():
        generate({target.stem: target}, lib, measure=False, compare_tflm=False)
        from tinyexit.codegen.cformat import c_ident
        return lib, [Stage(c_ident(target.stem), SEGMENT, 0)]
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
              low_energy: float = 0.0) -> list[CampaignReport]:
    """Host campaign for each granularity over `num_inputs` random int8 inputs; for a run folder or a .tflite
    the uninterrupted runs are also checked against TFLM (check_reference)."""
    out_dir = Path(out_dir)
    lib, stages = prepare_library(target, out_dir)
    exe = build_host(lib, stages, out_dir / ("host" + "".join(f"-{b}" for b in broken)), broken=tuple(broken),
                     slots=slots)
    host = HostTarget(exe, out_dir / "nvm.bin")
    inputs = random_inputs(num_inputs, host.info["input_size"], seed)
    reference = tflm_reference(target) if check_reference else None
    reports = []
    for g in granularities:
        work = out_dir / f"campaign-{str(Granularity.parse(g)).replace(':', '')}"
        reports.append(run_campaign(host, inputs, cuts=cuts, seed=seed, granularity=Granularity.parse(g),
                                    threshold=threshold, work_dir=work, reference=reference,
                                    low_energy=low_energy))
    return reports
