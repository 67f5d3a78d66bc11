"""One firmware holding many generated models and their inputs, run once on the emulated Cortex-M4: the
way the cortex_m4 kernel variant is checked (the host cannot execute DSP instructions)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyexit import toolchain
from tinyexit.codegen.cformat import c_ident

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Job:
    name: str               # model name in the library
    inputs: np.ndarray      # int8 [n, input_size]
    output_size: int
    chunked: int = 0        # the first `chunked` inputs run one unit at a time, arena outside live[] scrambled
    work: tuple = ()        # per step (offset, bytes) of the planned kernel work space: the next input runs
                            # guarded (every write outside live[] and the work space is counted)


def render_driver(jobs: list[Job], out: Path) -> Path:
    rows = [dict(cname=c_ident(j.name), count=len(j.inputs), size=j.inputs.shape[1], chunked=j.chunked,
                 work=[tuple(w) for w in j.work], inputs=[", ".join(map(str, r)) for r in j.inputs.tolist()]) for j in jobs]
    out.write_text(toolchain.render_from(HERE, "driver.c.j2", jobs=rows))
    (out.parent / "rq_check.c").write_text(toolchain.render_from(HERE, "rq_check.c.j2"))
    return out


def require_emulator() -> None:
    from tests.conftest import require_program
    require_program("arm-none-eabi-gcc", "apt-get install -y --no-install-recommends gcc-arm-none-eabi "
                                         "libnewlib-arm-none-eabi")
    require_program("qemu-system-arm", "apt-get install -y --no-install-recommends qemu-system-arm")


def run_jobs(lib: Path, jobs: list[Job], work: Path, timeout: float = 900, **build):
    """The library `lib` with the test driver for `jobs`, built for the emulated Cortex-M4 (mps2-an386) into
    work/fw and run once in QEMU: (run result, firmware). `build`: more build_firmware keywords."""
    from tinyexit.boards import load_board
    from tinyexit.build import build_firmware
    from tinyexit.targets import get_runner

    driver = render_driver(jobs, work / "driver.c")
    board = load_board("mps2-an386", emulate=True)
    srcs = sorted(s for s in lib.glob("*.c") if not s.name.startswith("host_")) + [driver, work / "rq_check.c"]
    fw = build_firmware(board, srcs, work / "fw", include_dirs=[lib], **build)
    return get_runner(board, "qemu").run(fw.elf, timeout=timeout), fw


def guard_counts(output: str, jobs: list[Job]) -> dict[str, int]:
    """G lines -> {job name: bytes written outside live[] and the planned work space}."""
    return {jobs[int(f[1])].name: int(f[2]) for f in map(str.split, output.splitlines()) if len(f) == 3 and f[0] == "G"}


def parse(output: str, jobs: list[Job]) -> tuple[dict[str, np.ndarray], tuple[int, int] | None]:
    """OUT lines -> {job name: [n, output_size] int8}; the RQ line -> (mismatches, tested)."""
    got: dict[str, list] = {j.name: [None] * len(j.inputs) for j in jobs}
    rq = None
    for line in output.splitlines():
        f = line.split()
        if len(f) == 4 and f[0] == "O":
            j = jobs[int(f[1])]
            got[j.name][int(f[2])] = np.frombuffer(bytes.fromhex(f[3]), np.uint8).astype(np.int8)
        elif len(f) == 3 and f[0] == "RQ":
            rq = (int(f[1]), int(f[2]))
    missing = [n for n, rows in got.items() if any(r is None for r in rows)]
    if missing:
        raise AssertionError(f"no output from the emulator for {missing[:5]} ...; tail: {output[-400:]}")
    return {n: np.stack(rows) for n, rows in got.items()}, rq
