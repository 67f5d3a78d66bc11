"""Check a generated library against its oracle (tflite_micro): build it with its host driver and feed it
inputs (build_host, run_host), or build it for the emulated board and run it there with exact instruction
counts (emulated_outputs); edge-case inputs (structured_inputs). Used by the tests, the benchmarks and
anyone who wants to verify a generated library. It compiles and runs firmware, so it sits beside build and
targets, not in codegen (codegen writes C and reads .tflite files only).

    exe = build_host(lib_dir)                        -> lib_dir/tx_host
    run_host(exe, name, inputs, output_size)         -> int8 [n, output_size]
    emulated_outputs(lib_dir, name, inputs)          -> (int8 outputs, instructions per inference)
    tflm_outputs(path, inputs)                       -> the oracle's int8 outputs
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from tinyexit import toolchain
from tinyexit.codegen.oracle import tflm_outputs
from tinyexit.errors import TinyexitError

__all__ = ["build_host", "run_host", "structured_inputs", "emulated_outputs", "tflm_outputs"]


def build_host(lib_dir: str | os.PathLike, cc: str = "gcc") -> Path:
    """Build the generated library with its host driver (host_main.c) into lib_dir/tx_host, as its Makefile's
    `tx_host` target does (the toolchain's host flags); kept when it is newer than every source and header."""
    lib = Path(lib_dir)
    exe = lib / "tx_host"
    sources = sorted(p for p in lib.glob("*.c") if p.name != "host_main.c") + [lib / "host_main.c"]
    inputs = [*sources, *lib.glob("*.h")]
    if exe.exists() and all(p.stat().st_mtime <= exe.stat().st_mtime for p in inputs):
        return exe
    return toolchain.compile_host(sources, exe, cc=cc, what=f"host build of {lib}")


def run_host(exe: str | os.PathLike, name: str, inputs: np.ndarray, output_size: int, *, chunk: int | None = None,
             scramble: bool = False, timeout: float = 120) -> np.ndarray:
    """Feed raw int8 inputs to `tx_host NAME` and return [n, output_size] outputs."""
    cmd = [str(exe), name]
    if chunk:
        cmd += ["--chunk", str(chunk)] + (["--scramble"] if scramble else [])
    x = np.ascontiguousarray(inputs, np.int8)
    r = subprocess.run(cmd, input=x.tobytes(), capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise TinyexitError(f"{' '.join(cmd)} failed: {r.stderr.decode(errors='replace')}")
    return np.frombuffer(r.stdout, np.int8).reshape(len(x), output_size)


def structured_inputs(shape: tuple[int, ...], zero_point: int, rng: np.random.Generator) -> np.ndarray:
    """Edge-case int8 inputs: constants (min, max, zero point), ramps, checkerboards, single spikes and
    small noise around the zero point."""
    n = int(np.prod(shape))
    xs = [np.full(n, v) for v in (-128, 127, 0, zero_point, zero_point + 1, zero_point - 1)]
    ramp = np.arange(n)
    xs += [(ramp % 256) - 128, 127 - (ramp % 256), np.where(ramp % 2 == 0, -128, 127),
           np.where((ramp // 7) % 2 == 0, zero_point, 127)]
    for k in (0, n // 2, n - 1):
        x = np.full(n, zero_point)
        x[k] = 127
        xs.append(x)
    for s in (1, 4, 16):
        xs.append(np.clip(zero_point + rng.integers(-s, s + 1, size=n), -128, 127))
    return np.clip(np.stack(xs), -128, 127).astype(np.int8).reshape((len(xs), *shape))


def emulated_outputs(lib_dir: str | os.PathLike, name: str, inputs: np.ndarray, *, board: str = "mps2-an386",
                     opt: str = "-O2", work: str | os.PathLike | None = None, timeout: float = 600,
                     per_step: bool = False, runner: str | None = None, cycles: bool = False, strict: bool = False):
    """Build the library with a small driver for the emulated board, run it on the board's runner (or
    `runner`; it must count instructions between two addresses: QEMU with the instruction-count plugin);
    returns (outputs [n, output_size] int8, instruction counts): one count per inference, or with
    per_step=True one per step of each inference (num_steps counts per input). cycles=True: also the
    estimated Cortex-M4 cycles of each window (outputs, instructions, cycles); with strict=True as well, also
    the stricter estimate of each window (address dependencies between neighbouring loads stall) after them."""
    import tempfile

    from tinyexit.boards import load_board
    from tinyexit.build import build_firmware
    from tinyexit.codegen.cformat import c_ident
    from tinyexit.codegen.emit import _banner
    from tinyexit.targets import get_runner

    lib = Path(lib_dir)
    x = np.asarray(inputs, np.int8).reshape(len(inputs), -1)
    b = load_board(board, emulate=True)
    board_runner = get_runner(b, runner, needs=("instruction_windows",))
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(work or tmp)
        (w / "bench_main.c").write_text(toolchain.render(
            "model/bench_main.c.j2", keep_trailing_newline=False, banner=_banner([name])[0], name=name,
            cname=c_ident(name), count=len(x), input_size=x.shape[1],
            inputs=[", ".join(map(str, row)) for row in x.tolist()], per_step=per_step))
        srcs = sorted(p for p in lib.glob("*.c") if not p.name.startswith("host_")) + [w / "bench_main.c"]
        fw = build_firmware(b, srcs, w / "fw", include_dirs=[lib], opt=opt)
        window = tuple(toolchain.symbol_address(fw.elf, s) for s in ("tx_bench_begin", "tx_bench_end"))
        r = board_runner.run(fw.elf, window=window, each_window=True, timeout=timeout)
    rows = [line.split()[1:] for line in r.output.splitlines() if line.startswith("OUT")]
    outs = np.array([[int(v) for v in row] for row in rows], np.int8)
    if cycles and strict:
        return outs, list(r.insns.per_window), r.cycles_per_window, r.cycles_strict_per_window
    if cycles:
        return outs, list(r.insns.per_window), r.cycles_per_window
    return outs, list(r.insns.per_window)
