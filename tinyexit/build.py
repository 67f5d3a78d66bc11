"""Firmware builds: board support generated from the board file, cross-compiled with arm-none-eabi-gcc,
sizes reported against the board's budget (refused with the sizes when the image does not fit); and
host builds of the same C with gcc, which tests use as the oracle for emulated runs.

    build_firmware(board, sources, out) -> Firmware        any C sources + the board support
    build_host(sources, out) -> Path                        the same sources + the host HAL
    render_board_support(board, out) -> list[Path]          startup.c, tx_hal.c, tx_hal.h, tx_board.h, link.ld
"""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Sequence

from tinyexit import toolchain
from tinyexit.boards import Board, load_board
from tinyexit.errors import TinyexitError
from tinyexit.io import atomic_dir, write_json, write_text
from tinyexit.pipeline import EXIT, RULES, TEMPORAL, Pipeline, c_config
from tinyexit.run import as_run, confidence_model_name
from tinyexit.toolchain import TEMPLATES, BuildError, SizeReport, size_report

IRQ_COUNT = {"nrf52840": 48, "netduinoplus2": 82, "mps2-an386": 32}


class ImageTooBigError(TinyexitError):
    """The image does not fit the board's flash or RAM."""


@dataclasses.dataclass(frozen=True)
class Firmware:
    elf: Path
    board: Board
    sizes: SizeReport
    out: Path


def render_board_support(board: Board, out: str | Path, *, flash_size: int | None = None,
                         ram_size: int | None = None) -> list[Path]:
    """Write startup.c, tx_hal.c, tx_hal.h, tx_board.h and link.ld for `board` into `out`. The sizes
    override the memory lengths in the linker script (used to measure an image that does not fit)."""
    out = Path(out)
    flash = board.code_flash
    ctx = dict(board=board, flash=dataclasses.replace(flash, size=flash_size or flash.size),
               ram_size=ram_size or board.ram.size, irq_count=IRQ_COUNT.get(board.name, 32))
    files = [toolchain.render_to("boards/startup.c.j2", out / "startup.c", **ctx),
             toolchain.render_to("boards/tx_hal.c.j2", out / "tx_hal.c", **ctx),
             toolchain.render_to("boards/tx_board.h.j2", out / "tx_board.h", **ctx),
             toolchain.render_to("boards/link.ld.j2", out / "link.ld", **ctx)]
    files.append(write_text(out / "tx_hal.h", (TEMPLATES / "boards" / "tx_hal.h").read_text()))
    return files


def build_firmware(board: Board | str, sources: Sequence[str | Path], out: str | Path, *,
                   include_dirs: Sequence[str | Path] = (), defines: dict[str, object] | None = None,
                   opt: str = "-O2", weight_sources: Sequence[str | Path] = (), name: str = "firmware",
                   emulate: bool = False, scratch_sources: Sequence[str | Path] = (),
                   arena_scratch: int = 0, prefix_map: tuple[Path, Path] | None = None) -> Firmware:
    """Cross-compile `sources` with the board support into `out/<name>.elf`; report sizes against the
    board's budget (written to `out/size.json`) and raise ImageTooBigError, with the sizes, when the image
    does not fit. `weight_sources`: sources whose .rodata counts as model weights in the report;
    `scratch_sources`: those whose .data/.bss is kernel static scratch; `arena_scratch`: the library's
    kernel work space inside the arena (its report.json `scratch_bytes`), for the report. `prefix_map`:
    (folder built in, folder it will be moved to): the debug information names the second."""
    if isinstance(board, str):
        board = load_board(board, emulate=emulate)
    out = Path(out)
    bsp = out / "board"
    render_board_support(board, bsp)
    objdir = out / "obj"
    objdir.mkdir(parents=True, exist_ok=True)
    defs = toolchain.define_flags(defines)
    incs = [f"-I{d}" for d in [bsp, *include_dirs]]
    cflags = [*toolchain.cross_cflags(board.cflags, opt),
              *([f"-ffile-prefix-map={prefix_map[0]}={prefix_map[1]}"] if prefix_map else []),
              *defs, *incs]
    all_sources = [Path(s) for s in sources] + [bsp / "startup.c", bsp / "tx_hal.c"]
    objects = []
    seen: dict[str, int] = {}
    for src in all_sources:
        stem = src.stem
        seen[stem] = seen.get(stem, 0) + 1
        obj = objdir / (f"{stem}.o" if seen[stem] == 1 else f"{stem}_{seen[stem]}.o")
        toolchain.compile_object(src, obj, cflags)
        objects.append(obj)
    weight_objs = [o for o, s in zip(objects, all_sources) if any(Path(w).resolve() == s.resolve()
                                                                  for w in weight_sources)]
    scratch_objs = [o for o, s in zip(objects, all_sources) if any(Path(w).resolve() == s.resolve()
                                                                   for w in scratch_sources)]
    measured = dict(scratch_objects=scratch_objs, arena_scratch=arena_scratch)
    elf = out / f"{name}.elf"
    map_file = out / f"{name}.map"

    def link(script: Path, target: Path):
        return toolchain.link_arm(board.cflags, objects, script, target, map_file)

    tmp_elf = out / f".{name}.elf.tmp"
    elf.unlink(missing_ok=True)  # never leave an older image next to a refused build
    p = link(bsp / "link.ld", tmp_elf)
    if p.returncode != 0:
        if "overflowed" not in p.stderr and "will not fit" not in p.stderr:
            raise BuildError(f"linking {elf.name} failed:\n{p.stderr.strip()}")
        # Measure with room to spare, then refuse with the real sizes.
        measure = out / "measure"
        render_board_support(board, measure, flash_size=min(board.code_flash.size * 64, 0x10000000),
                             ram_size=min(board.ram.size * 64, 0x10000000))
        p2 = link(measure / "link.ld", tmp_elf)
        if p2.returncode != 0:
            raise BuildError(f"linking {elf.name} failed:\n{p.stderr.strip()}")
        sizes = size_report(tmp_elf, board, map_file, weight_objs, **measured)
        tmp_elf.unlink(missing_ok=True)
        shutil.rmtree(measure, ignore_errors=True)
        write_json(out / "size.json", sizes.as_dict())
        raise ImageTooBigError(_too_big(board, sizes))
    sizes = size_report(tmp_elf, board, map_file, weight_objs, **measured)
    write_json(out / "size.json", sizes.as_dict())
    if not sizes.fits:  # the stack or data could push past the budget without a linker overflow
        tmp_elf.unlink(missing_ok=True)
        raise ImageTooBigError(_too_big(board, sizes))
    tmp_elf.replace(elf)
    return Firmware(elf=elf, board=board, sizes=sizes, out=out)


def _too_big(board: Board, s: SizeReport) -> str:
    parts = []
    if s.flash > s.flash_budget:
        parts.append(f"flash needs {s.flash:,} B but {board.name} has {s.flash_budget:,} B for the image "
                     f"(over by {s.flash - s.flash_budget:,} B)")
    if s.ram > s.ram_budget:
        parts.append(f"RAM needs {s.ram:,} B but {board.name} has {s.ram_budget:,} B "
                     f"(over by {s.ram - s.ram_budget:,} B)")
    return (f"the firmware does not fit {board.name}: {'; '.join(parts)}.\n{s.table()}\n"
            f"Fix: use a smaller model (fewer filters, pruning), or a board with more memory.")


def build_host(sources: Sequence[str | Path], out: str | Path, *, include_dirs: Sequence[str | Path] = (),
               defines: dict[str, object] | None = None, name: str = "firmware_host") -> Path:
    """Build the same sources for the host with gcc and the host HAL (stdio UART, no ticks)."""
    host = TEMPLATES / "boards" / "host"
    return toolchain.compile_host([*sources, host / "tx_hal_host.c"], Path(out) / name, defines=defines,
                                  include_dirs=[host, TEMPLATES / "boards", *include_dirs])


# ---------------------------------------------------------------------------------------------------
# The firmware application (firmware_templates/app/): the early-exit pipeline over test inputs.

def render_config(pipeline: Pipeline, out: str | Path, num_inputs: int = 0) -> list[Path]:
    """Write the one generated description of `pipeline` (tx_pipeline_config.{h,c}, tinyexit.pipeline.c_config)
    and the static headers it goes with (tx_stage.h, tx_policy.h, tx_temporal.h) into `out`: the app, the
    checkpointing runtime and the branch firmware read it."""
    out = Path(out)
    ctx = c_config(pipeline, num_inputs)
    return [toolchain.render_to("runtime/tx_pipeline_config.h.j2", out / "tx_pipeline_config.h", **ctx),
            toolchain.render_to("runtime/tx_pipeline_config.c.j2", out / "tx_pipeline_config.c", **ctx),
            *[write_text(out / h, (TEMPLATES / "runtime" / h).read_text())
              for h in ("tx_stage.h", "tx_policy.h", "tx_temporal.h")]]


def render_app(pipeline: Pipeline, inputs, labels, out: str | Path, source: str = "") -> list[Path]:
    """Write tx_app.c, the pipeline's description (render_config), the runtime it runs on (checkpointing off)
    and tx_app_inputs.c (the baked-in int8 inputs) into `out` for `pipeline` (tinyexit.pipeline: its stages
    need their output sizes). Compile APP_SOURCES of `out`."""
    import numpy as np
    out = Path(out)
    x = np.asarray(inputs, dtype=np.int8).reshape(len(inputs), -1) if len(inputs) else \
        np.zeros((0, pipeline.input_size), np.int8)
    if x.shape[1] != pipeline.input_size:
        raise TinyexitError(f"inputs have {x.shape[1]} values each but the model's input has "
                            f"{pipeline.input_size}; pass inputs of the model's input shape.")
    labels = [int(v) for v in (labels if labels is not None else [-1] * len(x))]
    heads = [s for s in pipeline.stages if s.role == EXIT]
    if pipeline.policy.rule == "confidence" and any(pipeline.policy.rule_for(h.name).confidence is None
                                                    for h in heads):
        raise TinyexitError("the confidence policy needs a confidence model for every exit head; re-run "
                            "`tinyexit calibrate RUN --policy confidence`.")
    rows = [", ".join(str(int(v)) for v in x.reshape(-1)[i:i + 24]) for i in range(0, x.size, 24)]
    return [*[write_text(out / f, (TEMPLATES / "app" / f).read_text()) for f in APP_FILES],
            *[write_text(out / f, (TEMPLATES / "runtime" / f).read_text()) for f in RUNTIME_OFF_FILES],
            *render_config(pipeline, out, len(x)),
            toolchain.render_to("app/tx_app_inputs.c.j2", out / "tx_app_inputs.c", num_inputs=len(x),
                                input_size=pipeline.input_size, input_rows=rows, labels=labels, source=source)]


# The runtime with checkpointing off (no NVM: tx_rt_off.c), as the app links it (render_app copies these).
RUNTIME_OFF_FILES = ("tx_checkpoint.h", "tx_checkpoint.c", "tx_pipeline.h", "tx_pipeline.c", "tx_crc32.h",
                     "tx_crc32.c", "tx_rt_hal.h", "tx_nvm.h", "tx_rt_off.c")
# The app's own files: tx_app_runtime.c compiles tx_checkpoint.c and tx_pipeline.c with checkpointing off only,
# tx_app_crc32.c tx_crc32.c with its small table.
APP_FILES = ("tx_app.c", "tx_app_runtime.c", "tx_app_crc32.c")
# The app's sources in render_app's folder.
APP_SOURCES = ("tx_app.c", "tx_pipeline_config.c", "tx_app_inputs.c", "tx_app_runtime.c", "tx_app_crc32.c",
               "tx_rt_off.c")


# ---------------------------------------------------------------------------------------------------
# A run directory's firmware: RUN/quant/manifest.json + RUN/policy.json + the generated library.

def c_name(name: str) -> str:
    try:
        from tinyexit.codegen.cformat import c_ident
        return c_ident(name)
    except ImportError:  # pragma: no cover - the code generator is part of the package
        ident = re.sub(r"[^0-9A-Za-z_]", "_", name)
        return ident if not ident[:1].isdigit() else "_" + ident


FIRMWARE_POLICIES = RULES + TEMPORAL


def pipeline_from_run(run_dir: str | Path, policy: dict | None = None) -> tuple[Pipeline, dict, dict]:
    """The firmware pipeline of a run: segments and exit heads from RUN/quant/manifest.json, the exit policy
    (integer thresholds) from RUN/policy.json. Returns (pipeline, manifest, policy)."""
    run = as_run(run_dir)
    man = run.manifest()
    if policy is None:
        policy = run.policy()
    kind = policy.get("policy", "max_softmax")
    if kind not in FIRMWARE_POLICIES:
        raise TinyexitError(f"policy.json uses the '{kind}' policy; the firmware implements "
                            f"{', '.join(FIRMWARE_POLICIES)}. Re-run `tinyexit calibrate {run}` with one of them.")
    confs = {e: confidence_model_name(e) for e in run.confidence_models(policy)}
    return Pipeline.from_manifest(man, policy, confidence=confs, where=str(run)), man, policy


def model_library(run_dir: str | Path, regenerate: bool = False, kernels: str | None = None,
                  default_kernels: str = "reference") -> Path:
    """The generated C library of a run (RUN/firmware/model), generated when missing, older than the run's
    quantized models, or not holding exactly the models the firmware links (`library_models`: the
    confidence policy adds a confidence model per early exit). `kernels`: the kernel variant it must
    use (regenerated when it was generated with another); None keeps the existing library's
    (`default_kernels` when generating)."""
    run = as_run(run_dir)
    lib = run.library_dir
    header = lib / "tx_model.h"
    try:
        from tinyexit.codegen.generate import generate
    except ImportError:
        raise TinyexitError(f"{lib} has no generated library and the code generator is not available; "
                            f"run `tinyexit generate {run} --out {lib}` first.") from None
    models = run.library_models()
    sources = run.quant.files() + list(models.values())
    stale = header.is_file() and any(p.stat().st_mtime > header.stat().st_mtime for p in sources)
    if header.is_file() and not stale:
        from tinyexit.pipeline import library_models as described
        try:   # the generator's description of the library (report.json), never its C
            stale = set(described(lib)) != {c_name(n) for n in models}
        except TinyexitError:
            stale = True
    chain = run.library_chain()
    if header.is_file() and not stale:
        doc = run.library_report()
        try:
            stale = kernels is not None and doc.get("kernels", "reference") != kernels
            # a library generated without the run's chain (older, or by `generate` on loose models)
            stale = stale or doc.get("chain", []) != [dataclasses.asdict(l) | {"readers": list(l.readers)}
                                                     for l in chain]
        except AttributeError:   # no report.json, or one that does not parse
            stale = True
    if regenerate or stale or not header.is_file():
        generate(models, lib, kernels=kernels or default_kernels, compare_tflm=False, chain=chain)
    return lib


def library_sources(lib: Path) -> list[Path]:
    """The library's C sources (the host driver excluded)."""
    return sorted(p for p in lib.glob("*.c") if not p.name.startswith("host_"))


def library_memory(lib: Path) -> dict:
    """build_firmware's keywords reporting a library's kernel scratch: its kernel sources (static scratch)
    and the work space its report.json plans inside the arena."""
    import json
    try:
        scratch = int(json.loads((lib / "report.json").read_text()).get("scratch_bytes", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        scratch = 0
    kernels = [p for p in library_sources(lib) if p.name != "tx_runtime.c" and not p.name.startswith("tx_model_")]
    return dict(scratch_sources=kernels, arena_scratch=scratch)


def build_run(run_dir: str | Path, board: Board | str, *, emulate: bool = False, num_inputs: int | None = 100,
              no_exit: bool = False, serial_inputs: bool = False, out: str | Path | None = None,
              opt: str = "-O2", seed: int = 0, inputs=None, kernels: str | None = None) -> Firmware:
    """`tinyexit build --board B RUN`: the firmware of a run for a board (emulated variant with
    emulate=True): the generated library, the app with `num_inputs` baked-in test inputs and the
    calibrated thresholds, the board support. Refuses (ImageTooBigError) when it does not fit.
    `inputs`: (int8 [N, input_size], labels [N]) to bake in instead of the run's test split.
    `kernels`: the library's kernel variant (see model_library); a library generated here without one
    gets the board's (`Board.kernels`: the DSP kernels on Cortex-M4 class cores)."""
    if isinstance(board, str):
        board = load_board(board, emulate=emulate)
    run = as_run(run_dir)
    pipe, man, _ = pipeline_from_run(run)
    lib = model_library(run, kernels=kernels, default_kernels=board.kernels)
    if serial_inputs:
        x, y = [], []
    elif inputs is not None:
        x, y = inputs
    else:
        x, y = run.test_inputs(man, num_inputs, seed)
    tag = board.variant + ("-noexit" if no_exit else "") + ("-serial" if serial_inputs else "")
    out = Path(out) if out else run.build_dir(tag)
    lib_srcs = library_sources(lib)
    with atomic_dir(out, holds=BUILD_OUTPUTS) as tmp:   # a failed build leaves the earlier one as it was
        app = tmp / "app"
        render_app(pipe, x, y, app, source=f"test split of {run.name}")
        fw = build_firmware(board, [app / s for s in APP_SOURCES] + lib_srcs, tmp, include_dirs=[app, lib],
                            defines={"TX_APP_NO_EXIT": int(no_exit), "TX_APP_SERIAL_INPUTS": int(serial_inputs)},
                            opt=opt, weight_sources=[s for s in lib_srcs if s.name.startswith("tx_model_")],
                            prefix_map=(tmp, out), **library_memory(lib))
    return dataclasses.replace(fw, elf=out / fw.elf.relative_to(tmp), out=out)


BUILD_OUTPUTS = ("app", "board", "obj", "size.json", "firmware.elf")   # what build_run writes into its folder
