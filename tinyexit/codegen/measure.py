"""Figures for the report: code bytes of the generated objects and TFLM's arena for the same model."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-ffunction-sections", "-fdata-sections"]


def section_sizes(src_dir: Path, sources: list[str]) -> tuple[str, dict[str, dict[str, int]]]:
    """Compile each source to an object (arm-none-eabi-gcc for Cortex-M4 when installed, else host gcc) and
    return (compiler description, {source: {"text": bytes, "rodata": bytes, "data": bytes, "bss": bytes}})."""
    if shutil.which("arm-none-eabi-gcc") and shutil.which("arm-none-eabi-size"):
        cc, size, extra, desc = "arm-none-eabi-gcc", "arm-none-eabi-size", ARM_FLAGS, "arm-none-eabi-gcc -O2 cortex-m4"
    elif shutil.which("gcc") and shutil.which("size"):
        cc, size, extra, desc = "gcc", "size", [], "host gcc -O2 (arm-none-eabi-gcc not installed)"
    else:
        return "none", {}
    out: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            obj = Path(tmp) / (Path(src).stem + ".o")
            r = subprocess.run([cc, *extra, *CFLAGS, "-c", "-o", str(obj), str(src_dir / src)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                from tinyexit.errors import TinyexitError
                raise TinyexitError(f"the generated {src} does not compile with {cc} (a code generator bug; "
                                    f"please report it with the model):\n{r.stderr[-2000:]}")
            text = subprocess.run([size, "-A", str(obj)], check=True, capture_output=True, text=True).stdout
            sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
                    for key in sizes:
                        if parts[0] == f".{key}" or parts[0].startswith(f".{key}."):
                            sizes[key] += int(parts[1])
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
