"""The whole toolchain on one task, stage after stage: data -> train -> quantize -> calibrate -> generate ->
build -> run on the (emulated) board -> benchmark. `tinyexit demo` is this with the embedded defaults."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable


def input_size(lib) -> int:
    return max(m.input_size for m in lib.models.values())     # the first segment's input is the largest


def inputs_that_fit(lib, board, code_margin: int = 64 * 1024) -> int:
    """How many test inputs can be baked into the firmware beside the library's weights on `board` (a Board)."""
    room = board.code_flash.size - lib.weight_bytes - code_margin
    return max(1, room // input_size(lib))


def run_pipeline(*, task: str = "kws", data: str | Path | None = None, out: str | Path | None = None,
                 epochs: int | None = None, board: str = "nrf52840", emulate: bool = True,
                 epsilon: float = 0.02, delta: float = 0.1, num_inputs: int = 100, retrain: bool = True,
                 log: Callable[[str], None] = print) -> dict:
    """Run every stage into the run directory `out` (default runs/TASK) and return the bench figures.
    With retrain=False an existing trained run is reused and only the later stages run again."""
    from tinyexit.bench import bench_run
    from tinyexit.boards import load_board
    from tinyexit.codegen import generate
    from tinyexit.policy.calibrate import calibrate_run
    from tinyexit.quantize import quantize_run
    from tinyexit.run import Run
    from tinyexit.train import format_report, train_image, train_kws

    run = Run(out or f"runs/{task}")
    b = load_board(board, emulate=emulate)
    times: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(name: str, detail: str = ""):
        log(f"\n=== {name}{detail} ===")
        t0 = time.time()
        yield
        times[name] = round(time.time() - t0, 1)

    with stage("train"):
        if retrain or not run.is_trained():
            report = (train_kws(data=data, out=run.path, epochs=epochs) if task == "kws"
                      else train_image(task, data=data, out=run.path, epochs=epochs))
            log(format_report(report))
        else:
            log(f"reusing the trained model in {run}")
    with stage("quantize", " (int8 by segments)"):
        quantize_run(run, log=log)
    with stage("calibrate", f" (risk control, epsilon={epsilon}, delta={delta})"):
        calibrate_run(run, epsilon=epsilon, delta=delta, log=log)
    with stage("generate C"):
        # the board's kernel variant: the DSP kernels on Cortex-M4 class cores
        lib = generate(run.library_models(), run.library_dir, kernels=b.kernels)
        log(lib.table())
    with stage("bench", f" (build, run and benchmark on {board}{' (emulated)' if emulate else ''})"):
        fit = inputs_that_fit(lib, b)
        if fit < num_inputs:
            log(f"baking {fit} test inputs into the firmware instead of {num_inputs}: that is what fits the board's "
                f"flash next to the weights ({input_size(lib):,} B per input)")
        bench = bench_run(run, b, num_inputs=min(num_inputs, fit), log=log, kernels=b.kernels)
    log("\nstage wall times (s): " + ", ".join(f"{k} {v}" for k, v in times.items()))
    return bench
