"""How C is rendered, compiled and sized: the one place that knows the templates' Jinja environment, the
compiler flags, the compilers and the size tools.

    render(template, **ctx) -> str              firmware_templates/<template> through the one environment
    render_to(template, out, **ctx) -> Path     the same, written atomically
    compile_host(sources, exe) -> Path          gcc with HOST_CFLAGS (the generated C builds with -Werror)
    compile_object(src, obj, flags)             one object (arm-none-eabi-gcc unless cc= says otherwise)
    link_arm(flags, objects, script, elf, map)  the cross link (the caller reads an overflow from stderr)
    section_sizes(path) / symbol_size(elf, name) / symbol_address(elf, name)
    size_report(elf, board, map_file) -> SizeReport   a firmware's flash and RAM against the board's budget

Flags: WARNINGS (C99, -Wall -Wextra -Werror) and OPT for every build, host or arm-none-eabi; a board adds its
CPU flags (Board.cflags) and the cross build its section and debug flags (cross_cflags).
"""
from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import jinja2

from tinyexit.errors import MissingToolError, TinyexitError
from tinyexit.io import write_text
from tinyexit.resources import templates_dir

TEMPLATES = templates_dir()
WARNINGS = ("-std=c99", "-Wall", "-Wextra", "-Werror")
OPT = "-O2"
HOST_CFLAGS = (*WARNINGS, OPT)                         # also the CFLAGS of the generated Makefiles
SECTIONS = ("-ffunction-sections", "-fdata-sections")  # objects measured or linked with --gc-sections
CORTEX_M4 = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")  # sizes without a board
ARM_GCC = "arm-none-eabi-gcc"
ARM_GCC_INSTALL = "apt-get install -y --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi"
GCC_INSTALL = "apt-get install -y gcc"


class BuildError(TinyexitError):
    """The compiler or the linker refused the sources."""


# ---------------------------------------------------------------------------------------------------
# Templates

@functools.lru_cache(maxsize=None)
def env(trim_blocks: bool = True, keep_trailing_newline: bool = True) -> jinja2.Environment:
    """The templates' environment: firmware_templates/, undefined names are errors, block tags take their
    line with them. The two options exist for templates written without them (the checkpointing runtime's
    pipeline.c.j2 and powerfail_inputs.c.j2; model/bench_main.c.j2 is rendered without its last newline): an
    overlay of the one environment (same loader, same settings otherwise), so their output stays as it was."""
    if not trim_blocks or not keep_trailing_newline:
        return env().overlay(trim_blocks=trim_blocks, lstrip_blocks=trim_blocks,
                             keep_trailing_newline=keep_trailing_newline)
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)


def render(template: str, /, *, trim_blocks: bool = True, keep_trailing_newline: bool = True, **ctx) -> str:
    """firmware_templates/<template> rendered with `ctx`."""
    return env(trim_blocks, keep_trailing_newline).get_template(template).render(**ctx)


def render_to(template: str, out: str | Path, /, **ctx) -> Path:
    """render() written to `out` (atomically)."""
    return write_text(out, render(template, **ctx))


def render_from(folder: str | Path, template: str, /, **ctx) -> str:
    """`folder`/<template> rendered in the one environment (same settings; `folder` is searched first, then
    firmware_templates/, which it may include): for templates kept beside their user, such as tests' drivers."""
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(folder)), env().loader])
    return env().overlay(loader=loader).get_template(template).render(**ctx)


def render_string(source: str, /, **ctx) -> str:
    """A template given as text, rendered in the one environment (it may include firmware_templates/)."""
    return env().from_string(source).render(**ctx)


# ---------------------------------------------------------------------------------------------------
# Compilers

def tool(name: str, install: str = ARM_GCC_INSTALL) -> str:
    """The path of program `name`; MissingToolError with `install` when it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(name, install)
    return path


def run(cmd: Sequence[str | Path], what: str) -> subprocess.CompletedProcess:
    """Run a compiler/binutils command; BuildError naming `what`, with the tool's message and the command."""
    p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True)
    if p.returncode != 0:
        raise BuildError(f"{what} failed:\n{p.stderr.strip() or p.stdout.strip()}\n"
                         f"(command: {' '.join(map(str, cmd))})")
    return p


def define_flags(defines: Mapping[str, object] | None) -> list[str]:
    """-DNAME=VALUE, or -DNAME for a value of None."""
    return [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in (defines or {}).items()]


def host_command(sources: Sequence[str | Path], exe: str | Path, *, include_dirs: Sequence[str | Path] = (),
                 defines: Mapping[str, object] | None = None, libs: Sequence[str] = (), cc: str = "gcc",
                 opt: str = OPT, flags: Sequence[str] = ()) -> list[str]:
    """The gcc command of compile_host (callers that cache a build hash it). `flags`: more flags (e.g.
    -shared -fPIC for a shared library)."""
    return [tool(cc, GCC_INSTALL), *WARNINGS, opt, *flags, *define_flags(defines),
            *(f"-I{d}" for d in include_dirs), *map(str, sources), "-o", str(exe), *(f"-l{lib}" for lib in libs)]


def compile_host(sources: Sequence[str | Path], exe: str | Path, *, include_dirs: Sequence[str | Path] = (),
                 defines: Mapping[str, object] | None = None, libs: Sequence[str] = (), cc: str = "gcc",
                 opt: str = OPT, flags: Sequence[str] = (), what: str = "host build") -> Path:
    """Compile and link `sources` for this machine into `exe` with HOST_CFLAGS."""
    exe = Path(exe)
    exe.parent.mkdir(parents=True, exist_ok=True)
    run(host_command(sources, exe, include_dirs=include_dirs, defines=defines, libs=libs, cc=cc, opt=opt,
                     flags=flags), what)
    return exe


def cross_cflags(cpu_flags: Sequence[str], opt: str = OPT) -> list[str]:
    """arm-none-eabi-gcc's flags for a firmware object: the board's CPU flags, OPT, WARNINGS, one section per
    function and datum (the link drops what is unused), no common symbols, debug information."""
    return [*cpu_flags, opt, *WARNINGS, *SECTIONS, "-fno-common", "-g"]


def compile_object(src: str | Path, obj: str | Path, flags: Sequence[str], *, cc: str = ARM_GCC,
                   what: str | None = None) -> Path:
    install = ARM_GCC_INSTALL if cc == ARM_GCC else GCC_INSTALL
    run([tool(cc, install), *flags, "-c", src, "-o", obj], what or f"compiling {src}")
    return Path(obj)


def link_arm(cpu_flags: Sequence[str], objects: Sequence[str | Path], script: str | Path, elf: str | Path,
             map_file: str | Path) -> subprocess.CompletedProcess:
    """Link firmware objects with newlib-nano and the linker script; returns the process (a region overflow
    is the caller's to report, with the sizes)."""
    cmd = [tool(ARM_GCC), *cpu_flags, "-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections",
           f"-Wl,-Map={map_file}", "-T", script, *objects, "-o", elf, "-lc", "-lgcc"]
    return subprocess.run(list(map(str, cmd)), capture_output=True, text=True)


# ---------------------------------------------------------------------------------------------------
# Sizes and symbols

def section_sizes(path: str | Path, size_tool: str = "arm-none-eabi-size") -> list[tuple[str, int]]:
    """(section, bytes) of an ELF or object, in file order (`size -A`)."""
    install = ARM_GCC_INSTALL if size_tool.startswith("arm-") else "apt-get install -y binutils"
    out = run([tool(size_tool, install), "-A", path], size_tool).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            rows.append((parts[0], int(parts[1])))
    return rows


def symbol_size(elf: str | Path, name: str) -> int:
    """Size of symbol `name` in an ARM ELF (0 when it has none)."""
    out = run([tool("arm-none-eabi-nm"), "-S", elf], "arm-none-eabi-nm").stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == name:
            return int(parts[1], 16)
    return 0


def symbol_address(elf: str | Path, name: str) -> int:
    """Address of a symbol in an ARM ELF (Thumb bit cleared)."""
    out = run([tool("arm-none-eabi-nm"), str(elf)], "arm-none-eabi-nm").stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16) & ~1
    raise TinyexitError(f"symbol {name} not found in {elf}; rebuild the firmware with tinyexit build.")


@dataclasses.dataclass(frozen=True)
class SizeReport:
    flash_code: int       # .isr_vector + .text + .ARM.exidx
    flash_rodata: int     # .rodata (weights are here)
    flash_weights: int    # the part of .rodata that comes from the model library's objects
    flash_data_init: int  # initial values of .data, stored in flash
    ram_data: int
    ram_bss: int          # includes the model arena
    ram_stack: int
    arena: int            # size of tx_arena when the model library is linked, else 0
    flash_budget: int
    ram_budget: int
    kernel_static: int = 0  # .data + .bss of the library's kernel objects (static scratch outside the arena)
    arena_scratch: int = 0  # the largest kernel work space of one step, planned inside the arena

    @property
    def flash(self) -> int:
        return self.flash_code + self.flash_rodata + self.flash_data_init

    @property
    def ram(self) -> int:
        return self.ram_data + self.ram_bss + self.ram_stack

    @property
    def fits(self) -> bool:
        return self.flash <= self.flash_budget and self.ram <= self.ram_budget

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(flash=self.flash, ram=self.ram, fits=self.fits)
        return d

    def table(self) -> str:
        fp = 100.0 * self.flash / self.flash_budget
        rp = 100.0 * self.ram / self.ram_budget
        return (f"flash {self.flash:>9,} / {self.flash_budget:,} B ({fp:.1f} %): code {self.flash_code:,}, "
                f"rodata {self.flash_rodata:,} (weights {self.flash_weights:,}), data init {self.flash_data_init:,}\n"
                f"RAM   {self.ram:>9,} / {self.ram_budget:,} B ({rp:.1f} %): data {self.ram_data:,}, "
                f"bss {self.ram_bss:,} (arena {self.arena:,} incl. kernel scratch up to {self.arena_scratch:,}; "
                f"static kernel scratch {self.kernel_static:,}), stack {self.ram_stack:,}")


def _rodata_from(map_file: Path, objects: Iterable[Path], sections: str = r"\.rodata") -> int:
    """Bytes of input sections (names matching `sections`: .rodata*) that the linker map attributes to `objects`."""
    names = {Path(o).name for o in objects}
    text = map_file.read_text()
    total = 0
    # "<section> <addr> <size> <object>" on one line, or the section name alone on the line before.
    pattern = re.compile(rf"^ ((?:{sections})\S*)\s*\n?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$", re.M)
    for m in pattern.finditer(text):
        if Path(m.group(4)).name in names:
            total += int(m.group(3), 16)
    return total


def size_report(elf: Path, board, map_file: Path | None = None,
                weight_objects: Iterable[Path] = (), scratch_objects: Iterable[Path] = (),
                arena_scratch: int = 0) -> SizeReport:
    """The sizes of a firmware ELF against `board`'s flash and RAM (the map file attributes .rodata to the
    weight objects, .data/.bss to the kernel objects)."""
    s = dict(section_sizes(elf))
    return SizeReport(
        flash_code=s.get(".isr_vector", 0) + s.get(".text", 0) + s.get(".ARM.exidx", 0),
        flash_rodata=s.get(".rodata", 0),
        flash_weights=_rodata_from(map_file, weight_objects) if map_file else 0,
        flash_data_init=s.get(".data", 0), ram_data=s.get(".data", 0), ram_bss=s.get(".bss", 0),
        ram_stack=s.get(".stack", 0), arena=symbol_size(elf, "tx_arena"),
        flash_budget=board.code_flash.size, ram_budget=board.ram.size,
        kernel_static=_rodata_from(map_file, scratch_objects, r"\.bss|\.data") if map_file else 0,
        arena_scratch=arena_scratch)
