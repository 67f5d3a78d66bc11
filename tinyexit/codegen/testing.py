"""Helpers to check a generated library against the oracle (tflite_micro.runtime); used by the tests and
by anyone who wants to verify a generated library on the host."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from tinyexit.errors import MissingToolError, TinyexitError


def tflm_outputs(path: str | os.PathLike, inputs: np.ndarray, arena_size: int | None = None) -> np.ndarray:
    """Run TFLM's reference interpreter on each input (int8, [n, *input_shape[1:]]); returns [n, output_size].
    `arena_size`: TFLM's tensor arena in bytes (default: the runtime's guess, 10 x the file size, too small for
    a model with few weights and large activations)."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_file(str(path), arena_size=arena_size)
    shape = tuple(int(d) for d in it.get_input_details(0)["shape"])
    outs = []
    for x in np.asarray(inputs, np.int8):
        # TFLM may reuse the input buffer for activations: set the input again before every invoke.
        it.set_input(x.reshape(shape), 0)
        it.invoke()
        outs.append(np.asarray(it.get_output(0), np.int8).ravel().copy())
    return np.stack(outs)


def build_host(lib_dir: str | os.PathLike, cc: str = "gcc") -> Path:
    """`make` the generated library's host driver; returns the tx_host path."""
    if shutil.which(cc) is None:
        raise MissingToolError(cc, "apt-get install -y gcc make")
    if shutil.which("make") is None:
        raise MissingToolError("make", "apt-get install -y make")
    r = subprocess.run(["make", "-s", "-C", str(lib_dir), f"CC={cc}", "tx_host"], capture_output=True, text=True)
    if r.returncode != 0:
        raise TinyexitError(f"host build of {lib_dir} failed:\n{r.stdout}{r.stderr}")
    return Path(lib_dir) / "tx_host"


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
                     per_step: bool = False):
    """Build the library with a small driver for the emulated board, run it in QEMU with the
    instruction-count plugin; returns (outputs [n, output_size] int8, instruction counts): one count per
    inference, or with per_step=True one per step of each inference (num_steps counts per input)."""
    import tempfile

    import jinja2

    from tinyexit.boards import load_board
    from tinyexit.build import build_firmware, symbol_address
    from tinyexit.codegen.cformat import c_ident
    from tinyexit.codegen.emit import TEMPLATES, _banner
    from tinyexit.targets.qemu import QemuRunner

    lib = Path(lib_dir)
    x = np.asarray(inputs, np.int8).reshape(len(inputs), -1)
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(work or tmp)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                                 trim_blocks=True, lstrip_blocks=True)
        (w / "bench_main.c").write_text(env.get_template("model/bench_main.c.j2").render(
            banner=_banner([name])[0], name=name, cname=c_ident(name), count=len(x), input_size=x.shape[1],
            inputs=[", ".join(map(str, row)) for row in x.tolist()], per_step=per_step))
        b = load_board(board, emulate=True)
        srcs = sorted(p for p in lib.glob("*.c") if not p.name.startswith("host_")) + [w / "bench_main.c"]
        fw = build_firmware(b, srcs, w / "fw", include_dirs=[lib], opt=opt)
        window = (symbol_address(fw.elf, "tx_bench_begin"), symbol_address(fw.elf, "tx_bench_end"))
        r = QemuRunner(b).run(fw.elf, window=window, each_window=True, timeout=timeout)
    rows = [line.split()[1:] for line in r.output.splitlines() if line.startswith("OUT")]
    outs = np.array([[int(v) for v in row] for row in rows], np.int8)
    return outs, list(r.insns.per_window)
