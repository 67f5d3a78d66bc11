"""`tinyexit powerfail --emulate`: the emulated campaigns of a target on a board (emulated.py runs the boots and
the cuts), split into seeded shards on Ray (fanout.py), with the NVM-operation instructions, the NVM trace of an
uninterrupted inference and the flash wear measured after each campaign (nvm_events.py). Just-in-time
granularities are campaigned with the power-fail warning: every cut boot is warned at a random instruction and
cut after it (half of those cuts inside the JIT commit)."""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Sequence

from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated, run_emulated_campaign
from tinyexit.intermittent.host import Granularity
from tinyexit.intermittent.nvm_events import nvm_op_instructions
from tinyexit.intermittent.report import EmulatedReport
from tinyexit.pipeline import Pipeline


def measure_nvm_ops(target: EmulatedTarget, report: EmulatedReport, num_inputs: int, *,
                    threshold: int | None = None) -> None:
    """Fills the report's instructions inside NVM operations per inference (its granularity and 'none'), from
    one more uninterrupted boot of each input and granularity, windowed on the NVM layer (nvm_op_instructions)."""
    for g, attr in ((Granularity.parse(report.granularity), "nvm_op_instructions_per_inference"),
                    (Granularity("none"), "nvm_op_instructions_per_inference_baseline")):
        setattr(report, attr, sum(nvm_op_instructions(target, j, g, input_id=0xFFFF0000 + j, threshold=threshold)
                                  for j in range(num_inputs)) / num_inputs)


def build_in_region(lib_dir: str | Path, pipeline: Pipeline, inputs: Sequence[bytes], board, out_dir: str | Path,
                    nvm_region: int | str | None, **kw):
    """build_emulated with the NVM over `nvm_region` bytes of the board's flash (whole pages; "max": all the flash
    the image leaves free; None: the board file's NVM) -> (firmware, the board with that region)."""
    from tinyexit.boards import load_board, with_nvm_region
    board = load_board(board, emulate=True) if isinstance(board, str) else board
    if nvm_region == "max":   # the image does not depend on the region: build, then leave it the rest
        fw = build_emulated(lib_dir, pipeline, inputs, board, out_dir, **kw)
        page = board.flash_nvm.page_size
        nvm_region = (board.flash.size - fw.sizes.flash) // page * page
    if nvm_region is not None:
        board = with_nvm_region(board, int(nvm_region))
    return build_emulated(lib_dir, pipeline, inputs, board, out_dir, **kw), board

def powerfail_emulated(target, out_dir, *, board: str = "mps2-an386", cuts: int = 50, seed: int = 0,
                       granularities: Sequence[str] = ("layer",), num_inputs: int = 2, broken: Sequence[str] = (),
                       threshold: int | None = None, slots: int | str = 2, runner: str | None = None,
                       nvm_region: int | str | None = None, rate_hz: float = 1.0,
                       wear: bool = True, shards: int | None = 1, workers: int | None = 1,
                       address: str | None = None, defer_results: bool = False) -> list[EmulatedReport]:
    """The emulated campaign of each granularity on `board` with the board's kernel variant. `nvm_region`:
    bytes of NVM for the slots (whole pages; "max": all the flash the image leaves free), used whole with
    slots="fit" (a log: erases spread over all its pages); `wear`: also measure page erases per inference over
    whole turns of the ring or log and the flash lifetime at `rate_hz` inferences per second. The cuts are split
    over `shards` seeded shards (fanout.plan; each its own PSRAM file) run on `workers` Ray workers or the
    cluster at `address`; one shard is the serial campaign of `seed`. `defer_results`: just-in-time granularities
    commit a result at the power warning (TX_CKPT_DEFER_RESULTS, tx_checkpoint.h)."""
    from tinyexit.boards import load_board
    from tinyexit.intermittent import fanout, prepare_library, random_inputs
    from tinyexit.intermittent.nvm_events import measure_wear, nvm_trace
    out_dir = Path(out_dir)
    b = load_board(board, emulate=True) if isinstance(board, str) else board
    lib, pipe = prepare_library(target, out_dir, kernels=b.kernels)
    inputs = random_inputs(num_inputs, pipe.input_size, seed)   # the first segment's input (the library's)
    fw_dir = out_dir / ("emu" + "".join(f"-{x}" for x in broken) + ("-defer" if defer_results else ""))
    fw, b = build_in_region(lib, pipe, inputs, b, fw_dir, nvm_region, broken=broken, slots=slots,
                            defer_results=defer_results)
    et = EmulatedTarget(fw, out_dir / "psram.img", runner=runner)
    plan = fanout.plan(seed, cuts, shards)
    reports = []
    for g in granularities:
        t0 = time.monotonic()
        shard_fn = functools.partial(_campaign_shard, fw, out_dir, runner, num_inputs, g, threshold, inputs,
                                     Path(target))
        parts = fanout.run_shards(shard_fn, plan, workers=workers, address=address, desc=f"campaign {g}")
        r = parts[0] if len(plan) == 1 else fanout.merge(parts, plan, seed)
        r.wall_seconds = time.monotonic() - t0
        r.kernels, r.rate_hz = b.kernels, rate_hz
        measure_nvm_ops(et, r, num_inputs, threshold=threshold)
        r.nvm_trace = nvm_trace(et, 0, Granularity.parse(g), threshold=threshold)
        if r.nvm_trace.erase_page_s is not None and r.nvm_trace.write_word_s is not None:
            r.nvm_seconds_per_inference = r.nvm_trace.nvm_seconds()
        if wear and r.ok and b.flash_nvm.erases:   # an FRAM has no erase to wear
            r.wear = measure_wear(et, Granularity.parse(g), threshold=threshold)
        print(f"{b.name} {g}: campaign and wear measurement {time.monotonic() - t0:.0f} s", flush=True)
        reports.append(r)
    return reports


def _campaign_shard(fw, out_dir: Path, runner: str | None, num_inputs: int, granularity: str, threshold: int | None,
                    inputs: Sequence[bytes], target: Path, shard) -> EmulatedReport:
    """One shard of an emulated campaign (a Ray task or a call here): its own PSRAM file and work folder."""
    from tinyexit.intermittent import tflm_reference_cached
    work = out_dir if shard.count == 1 else out_dir / shard.name
    work.mkdir(parents=True, exist_ok=True)
    et = EmulatedTarget(fw, work / "psram.img", runner=runner)
    g = Granularity.parse(granularity)
    return run_emulated_campaign(et, num_inputs, cuts=shard.cuts, seed=shard.seed, granularity=g,
                                 threshold=threshold, work_dir=work / f"emu-campaign-{granularity.replace(':', '')}",
                                 inputs=inputs, reference=tflm_reference_cached(target),
                                 warn=1.0 if g.jit else 0.0)
