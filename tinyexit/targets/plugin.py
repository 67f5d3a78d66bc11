"""The instruction-count QEMU plugin: C source shipped in this package, built with gcc (the toolchain's host
flags) on first use into a cache folder (~/.cache/tinyexit, or $TINYEXIT_CACHE), keyed by the source's hash.
Besides exact instructions it gives estimated Cortex-M4 cycles (TRM timings, zero wait states, no flash wait
states; the rules are in insn_count_plugin.c), and beside them a stricter estimate (cycles_strict) that does not
pipeline a load/store whose address depends on the load just before it."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tinyexit import toolchain
from tinyexit.errors import TinyexitError
from tinyexit.io import atomic_path
from tinyexit.paths import cache_root

SOURCE = Path(__file__).with_name("insn_count_plugin.c")
WINDOW_RE = re.compile(r"tinyexit-window n=\d+ insns=(\d+) cycles=(\d+) cycles_strict=(\d+)")
LINE_RE = re.compile(r"tinyexit-insns total=(\d+) windows=(\d+) window_insns=(\d+) cycles=(\d+) window_cycles=(\d+)"
                     r" cycles_strict=(\d+) window_cycles_strict=(\d+)(?: limit_reached=(\d+))?")


def cache_dir() -> Path:
    return cache_root()


def plugin_path() -> Path:
    """Path of the built plugin; builds it when the source changed or it does not exist yet."""
    src = SOURCE.read_bytes()
    digest = hashlib.sha256(src).hexdigest()[:16]
    lib = cache_dir() / f"libtinyexit_insns-{digest}.so"
    if lib.exists():
        return lib
    with atomic_path(lib) as tmp:
        toolchain.compile_host([SOURCE], tmp, flags=("-shared", "-fPIC"),
                               what="building the QEMU instruction-count plugin")
    return lib


def plugin_args(limit: int | None = None, window: tuple[int, int] | None = None,
                limit_status: int | None = None, each: bool = False) -> str:
    """The -plugin option value."""
    parts = [str(plugin_path())]
    if limit is not None:
        if limit <= 0:
            raise TinyexitError(f"limit must be a positive instruction count, got {limit}")
        parts.append(f"limit={limit}")
    if limit_status is not None:
        parts.append(f"limit_status={limit_status}")
    if window is not None:
        # Thumb function symbols have bit 0 set; QEMU reports instruction addresses without it.
        parts += [f"start=0x{window[0] & ~1:x}", f"stop=0x{window[1] & ~1:x}"]
        if each:
            parts.append("each=1")
    return ",".join(parts)


def parse_counts(log: str):
    from tinyexit.targets import InsnCounts
    m = LINE_RE.search(log)
    if not m:
        return None
    per_window = WINDOW_RE.findall(log)
    return InsnCounts(total=int(m.group(1)), windows=int(m.group(2)), window_insns=int(m.group(3)),
                      limit_reached=int(m.group(8)) if m.group(8) else None,
                      per_window=[int(w) for w, _, _ in per_window], cycles=int(m.group(4)),
                      window_cycles=int(m.group(5)), per_window_cycles=[int(c) for _, c, _ in per_window],
                      cycles_strict=int(m.group(6)), window_cycles_strict=int(m.group(7)),
                      per_window_cycles_strict=[int(c) for _, _, c in per_window])


if __name__ == "__main__":  # `python -m tinyexit.targets.plugin`: build at set-up, print the path
    print(plugin_path())
