"""Figures for the report: code bytes of the generated objects and TFLM's arena for the same model."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path


def section_sizes(src_dir: Path, sources: list[str]) -> tuple[str, dict[str, dict[str, int]]]:
    """Compile each source to an object (arm-none-eabi-gcc for Cortex-M4 when installed, else host gcc) and
    return (compiler description, {source: {"text": bytes, "rodata": bytes, "data": bytes, "bss": bytes}})."""
    from tinyexit import toolchain
    from tinyexit.errors import TinyexitError

    if shutil.which(toolchain.ARM_GCC) and shutil.which("arm-none-eabi-size"):
        cc, size, cpu, desc = toolchain.ARM_GCC, "arm-none-eabi-size", toolchain.CORTEX_M4, \
            "arm-none-eabi-gcc -O2 cortex-m4"
    elif shutil.which("gcc") and shutil.which("size"):
        cc, size, cpu, desc = "gcc", "size", (), "host gcc -O2 (arm-none-eabi-gcc not installed)"
    else:
        return "none", {}
    out: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            obj = Path(tmp) / (Path(src).stem + ".o")
            try:
                toolchain.compile_object(src_dir / src, obj, [*cpu, *toolchain.HOST_CFLAGS, *toolchain.SECTIONS], cc=cc)
            except toolchain.BuildError as e:
                raise TinyexitError(f"the generated {src} does not compile with {cc} (a code generator bug; "
                                    f"please report it with the model):\n{str(e)[-2000:]}") from None
            sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
            for name, nbytes in toolchain.section_sizes(obj, size):
                for key in sizes:
                    if name == f".{key}" or name.startswith(f".{key}."):
                        sizes[key] += nbytes
            out[src] = sizes
    return desc, out


def _flush_c_stdout() -> None:
    """tflite_micro prints through C stdio, which may buffer: flush before restoring the descriptor."""
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except Exception:
        pass


def tflm_arena_bytes(path: str | os.PathLike) -> dict[str, int] | None:
    """TFLM's arena for the model, from tflite_micro's recording allocator (host build, 64-bit pointers:
    slightly larger than on a 32-bit MCU). {"total": ..., "head": ... (activations), "tail": ...} or None."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except Exception:
        return None
    with tempfile.TemporaryFile(mode="w+b") as cap:
        import sys
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(2)  # MicroPrintf writes to stderr on the host
        try:
            os.dup2(cap.fileno(), 2)
            it = runtime.Interpreter.from_file(str(path))
            it.print_allocations()
        except Exception:
            return None
        finally:
            _flush_c_stdout()
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        cap.seek(0)
        text = cap.read().decode(errors="replace")
    figures = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if m:
            figures[key] = int(m.group(1))
    return figures or None
