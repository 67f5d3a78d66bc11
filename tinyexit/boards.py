"""Boards as data: one YAML file per board in `boards/`, validated against `boards/board.schema.json`.

A board names its core, its memory budget (flash, RAM, NVM), the HAL drivers its firmware needs (UART,
tick counter, how a run ends) and its runners in order of preference (the first is the default). An
emulated board is the same data with an override: `load_board("nrf52840", emulate=True)` keeps the
nRF52840's memory budget and swaps in the HAL of the QEMU machine that runs it.
"""
from __future__ import annotations

import dataclasses
import json
import re
from functools import lru_cache
from pathlib import Path

import jsonschema

from tinyexit import schemafile
from tinyexit.errors import TinyexitError
from tinyexit.resources import boards_dir
from tinyexit.units import parse_quantity

BOARDS_DIR = boards_dir()
SCHEMA_PATH = BOARDS_DIR / "board.schema.json"

# arm-none-eabi-gcc flags per core (hard float ABI where there is an FPU).
CORE_FLAGS = {
    "cortex-m4f": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m3": ["-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"],
}


class BoardError(TinyexitError):
    """A board file is missing or wrong; the message names the file, the key and the fix."""


@dataclasses.dataclass(frozen=True)
class Region:
    origin: int
    size: int

    @property
    def end(self) -> int:
        return self.origin + self.size


@dataclasses.dataclass(frozen=True)
class Nvm(Region):
    driver: str  # nrf_nvmc | flash_sim | ram | spi_fram
    page_size: int
    # flash only (None elsewhere): erase cycles per page, seconds per page erase / word write, nWRITE
    endurance: int | None = None
    erase_page_s: float | None = None
    write_word_s: float | None = None
    max_writes_per_word: int | None = None
    write_byte_s: float | None = None   # byte-writable NVM (spi_fram): seconds per byte written

    @property
    def pages(self) -> int:
        return self.size // self.page_size

    @property
    def erases(self) -> bool:
        """Whether a page must be erased before it is written again (flash); an SPI FRAM writes bytes in place."""
        return self.driver not in BYTE_WRITABLE

    @property
    def mapped(self) -> bool:
        """Whether the NVM is in the CPU's address space (flash, RAM); an SPI device is reached through its bus."""
        return self.driver not in BYTE_WRITABLE

    @property
    def word_write_s(self) -> float | None:
        """Seconds to write one 32-bit word: write_word_s, or 4 x write_byte_s."""
        return self.write_word_s if self.write_word_s is not None else (
            None if self.write_byte_s is None else 4 * self.write_byte_s)


BYTE_WRITABLE = ("spi_fram",)   # NVM drivers without erase (tx_nvm.h's TX_NVM_ERASE 0)
# What the emulated NVM inherits from the board's own (memory.nvm): it emulates that NVM's timing and limits.
FLASH_FIELDS = ("endurance", "erase_page_s", "write_word_s", "max_writes_per_word", "write_byte_s")


@dataclasses.dataclass(frozen=True)
class Uart:
    driver: str  # nrf_uarte | cmsdk_apb | stm32_usart
    base: int
    baudrate: int = 115200
    tx_pin: int | None = None
    rx_pin: int | None = None


@dataclasses.dataclass(frozen=True)
class BoardEnergy:
    """The board's `energy:` section in SI units (see boards/nrf52840.yaml for the datasheet references). The NVM's
    times are memory.nvm's (Board.flash_nvm: erase_page_s, write_word_s or write_byte_s), its currents are here."""
    supply_v: float       # VDD at which the currents hold; the load is modelled as power = current x supply_v
    run_current_a: float  # executing from flash (with cache) at the board's clock
    sleep_current_a: float
    off_current_a: float  # while the capacitor recharges below the turn-on voltage
    erase_current_a: float | None   # drawn while the NVM erases a page (None: an NVM without erase)
    write_current_a: float          # drawn while the NVM writes
    warn_v: float         # the default low-energy warning level (power-fail comparator)
    warn_min_v: float     # the comparator's configurable range and step
    warn_max_v: float
    warn_step_v: float
    on_v: float           # the supply turns the board on at this capacitor voltage ...
    off_v: float          # ... and off (cut) at this one
    max_v: float          # the capacitor is not charged above this
    capacitor_f: float


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    clock_hz: int
    flash: Region          # the whole flash; `code_flash` excludes an NVM area inside it
    ram: Region
    nvm: Nvm               # the NVM the firmware uses (the emulated one in the QEMU variant)
    stack_size: int
    uart: Uart
    tick: str              # systick | dwt
    exit: str              # semihosting | halt
    runners: tuple[str, ...]
    emulated: bool         # True when this is the QEMU variant of the board
    pyocd_target: str | None
    serial_baudrate: int
    qemu_machine: str | None
    instructions_per_tick: float | None
    renode_platform: str | None
    renode_uart: str | None
    path: Path
    energy: BoardEnergy | None = None   # None: the board file has no `energy:` section
    real_nvm: Nvm | None = None   # the board's own NVM (memory.nvm) when `nvm` emulates it elsewhere

    @property
    def flash_nvm(self) -> Nvm:
        """The board's own NVM: the image's flash budget leaves it out, and the flash's endurance and timing
        are its (the emulated NVM of the QEMU variant lives elsewhere, e.g. in PSRAM)."""
        return self.real_nvm or self.nvm

    @property
    def cflags(self) -> list[str]:
        return list(CORE_FLAGS[self.core])

    @property
    def code_flash(self) -> Region:
        """Flash available to the image: the flash minus an NVM area at its end."""
        nvm = self.flash_nvm
        if nvm.mapped and self.flash.origin <= nvm.origin < self.flash.end:
            return Region(self.flash.origin, nvm.origin - self.flash.origin)
        return self.flash

    @property
    def kernels(self) -> str:
        """The kernel variant that suits the core: the DSP-extension kernels on Cortex-M4 class cores,
        the portable reference kernels elsewhere."""
        return "cortex_m4" if self.core in DSP_CORES else "reference"

    @property
    def default_runner(self) -> str:
        return "qemu" if self.emulated else self.runners[0]

    @property
    def variant(self) -> str:
        """A name for build folders: the board, plus `-qemu` for its emulated variant."""
        return f"{self.name}-qemu" if self.emulated and self.runners[0] != "qemu" else self.name


# Cores with the Armv7E-M DSP extension (SMLAD, SXTB16) that firmware_templates/kernels/cortex_m4 uses.
DSP_CORES = ("cortex-m4", "cortex-m4f")


def parse_size(value: int | str) -> int:
    """'256K' -> 262144, '1M' -> 1048576, 4096 -> 4096."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"([0-9]+)([KM]?)", value)
    if not m:
        raise ValueError(value)
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1024 * 1024}[m.group(2)]


@lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def available_boards() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.yaml"))


def _schema_error_message(file: Path, err: jsonschema.ValidationError) -> str:
    where = schemafile.where(err.absolute_path)
    if err.validator == "required" and where == "(top level)":
        missing = schemafile.missing_key(err)
        if missing in ("qemu", "pyocd", "renode"):
            return (f"{file}: runners lists '{missing}' but there is no '{missing}:' section. "
                    f"Add a '{missing}:' section describing it, or remove '{missing}' from runners.")
    if err.validator in ("pattern", "type") and "a string like" in str(err.schema.get("description", "")):
        what, like = err.schema["description"].split(": a string like ")
        return f"{file}: {where}: {err.instance!r} is not {what}. Write it with its unit, like {like}."
    if err.validator == "oneOf" and "256K" in str(err.schema.get("description", "")):
        return (f"{file}: {where}: {err.instance!r} is not a size. Write bytes as an integer or a "
                f"string like \"256K\" or \"1M\".")
    return schemafile.error_message(file, err, schema_path=SCHEMA_PATH, example="boards/nrf52840.yaml")


def _check_semantics(file: Path, data: dict) -> None:
    mem = data["memory"]
    flash = Region(mem["flash"]["origin"], parse_size(mem["flash"]["size"]))
    ram = Region(mem["ram"]["origin"], parse_size(mem["ram"]["size"]))
    for key, nvm_raw in (("memory.nvm", mem["nvm"]), ("qemu.nvm", data.get("qemu", {}).get("nvm"))):
        if nvm_raw is None:
            continue
        nvm = Region(nvm_raw["origin"], parse_size(nvm_raw["size"]))
        page = parse_size(nvm_raw["page_size"])
        if nvm.size % page:
            raise BoardError(f"{file}: {key}: size {nvm.size} is not a multiple of page_size {page}. "
                             f"Make the NVM a whole number of pages.")
        byte_writable = nvm_raw["driver"] in BYTE_WRITABLE
        flash_keys = [k for k in ("erase_page_s", "write_word_s", "max_writes_per_word") if k in nvm_raw]
        if byte_writable and flash_keys:
            raise BoardError(f"{file}: {key}: driver {nvm_raw['driver']} has no erase and no word rule; remove "
                             f"{', '.join(flash_keys)} (give write_byte_s).")
        if not byte_writable and "write_byte_s" in nvm_raw:
            raise BoardError(f"{file}: {key}: write_byte_s is for a byte-writable NVM (driver spi_fram); flash "
                             f"gives write_word_s.")
        if byte_writable:
            continue   # an SPI device: its origin is an address on its bus, not in the CPU's map
        if flash.origin <= nvm.origin < flash.end and nvm.end != flash.end:
            raise BoardError(f"{file}: {key}: an NVM area inside the flash must end where the flash ends "
                             f"(0x{flash.end:08x}); it ends at 0x{nvm.end:08x}. Move it to the last pages.")
        if nvm.origin < ram.end and ram.origin < nvm.end:
            raise BoardError(f"{file}: {key}: NVM 0x{nvm.origin:08x}..0x{nvm.end:08x} overlaps RAM "
                             f"0x{ram.origin:08x}..0x{ram.end:08x}. Give NVM its own addresses.")
    if flash.origin < ram.end and ram.origin < flash.end:
        raise BoardError(f"{file}: memory: flash and RAM overlap. Fix their origin/size.")
    if parse_size(data["stack_size"]) >= ram.size:
        raise BoardError(f"{file}: stack_size {parse_size(data['stack_size'])} does not fit in RAM "
                         f"({ram.size} bytes). Make the stack smaller.")


def _energy(file: Path, data: dict, clock_hz: int) -> BoardEnergy | None:
    """The `energy:` section in SI units, checked: one run current, voltages in order, the warning level inside
    the comparator's range and between the off and on voltages, NVM currents for the NVM's operations (whose
    times memory.nvm gives)."""
    raw = data.get("energy")
    if raw is None:
        return None

    def q(value, unit, key):
        return parse_quantity(value, unit, what=f"{file}: energy.{key}")

    if ("run_current" in raw) == ("run_current_per_mhz" in raw):
        raise BoardError(f"{file}: energy: give exactly one of run_current (at clock_hz) and run_current_per_mhz.")
    run = (q(raw["run_current"], "A", "run_current") if "run_current" in raw
           else q(raw["run_current_per_mhz"], "A", "run_current_per_mhz") * clock_hz / 1e6)
    pof, volts = raw["pof_warn"], raw["voltages"]
    e = BoardEnergy(
        supply_v=q(raw["supply"], "V", "supply"), run_current_a=run,
        sleep_current_a=q(raw["sleep_current"], "A", "sleep_current"),
        off_current_a=q(raw["off_current"], "A", "off_current"),
        erase_current_a=q(raw["nvm_erase_current"], "A", "nvm_erase_current") if "nvm_erase_current" in raw else None,
        write_current_a=q(raw["nvm_write_current"], "A", "nvm_write_current"),
        warn_v=q(pof["default"], "V", "pof_warn.default"), warn_min_v=q(pof["min"], "V", "pof_warn.min"),
        warn_max_v=q(pof["max"], "V", "pof_warn.max"), warn_step_v=q(pof["step"], "V", "pof_warn.step"),
        on_v=q(volts["turn_on"], "V", "voltages.turn_on"), off_v=q(volts["turn_off"], "V", "voltages.turn_off"),
        max_v=q(volts["max"], "V", "voltages.max"), capacitor_f=q(raw["capacitor"], "F", "capacitor"))
    if not 0 < e.off_v < e.warn_v < e.on_v <= e.max_v:
        raise BoardError(f"{file}: energy: need 0 < voltages.turn_off < pof_warn.default < voltages.turn_on <= voltages.max "
                         f"(got {e.off_v} V, {e.warn_v} V, {e.on_v} V, {e.max_v} V). Fix the voltages.")
    if not e.warn_min_v <= e.warn_v <= e.warn_max_v:
        raise BoardError(f"{file}: energy.pof_warn: default {e.warn_v} V is outside the comparator's range "
                         f"{e.warn_min_v}..{e.warn_max_v} V. Choose a level inside it.")
    if min(e.capacitor_f, e.supply_v, e.warn_step_v) <= 0:
        raise BoardError(f"{file}: energy: capacitor, supply and pof_warn.step must be > 0.")
    nvm = data["memory"]["nvm"]
    erases = nvm["driver"] not in BYTE_WRITABLE
    missing = [k for k in (("erase_page_s", "write_word_s") if erases else ("write_byte_s",)) if k not in nvm]
    if missing:
        raise BoardError(f"{file}: energy: the energy model needs the NVM's times; add {', '.join(missing)} to "
                         f"memory.nvm.")
    if erases != (e.erase_current_a is not None):
        raise BoardError(f"{file}: energy: nvm_erase_current is " + ("required: the NVM erases pages." if erases else
                         f"not for driver {nvm['driver']} (no erase); remove it."))
    return e


def load_board_file(file: str | Path, emulate: bool = False) -> Board:
    """Load and validate one board file. `emulate=True` gives the QEMU variant (raises when the board
    has no QEMU runner)."""
    file = Path(file)
    data = schemafile.read_mapping(
        file, BoardError, missing=f"board file {file} does not exist. Known boards: {', '.join(available_boards())}.",
        not_mapping="a board file must be a mapping of keys (name, core, memory, ...).")
    schemafile.check(file, data, _schema(), BoardError, _schema_error_message)
    schemafile.check_name(file, data, BoardError)
    _check_semantics(file, data)

    hal = dict(data["hal"])
    nvm_raw = own_nvm = data["memory"]["nvm"]
    if emulate:
        if "qemu" not in data["runners"]:
            raise BoardError(f"board '{data['name']}' cannot be emulated: its runners are "
                             f"{data['runners']}. Use a board with a qemu runner (e.g. nrf52840).")
        hal.update(data["qemu"].get("hal", {}))
        nvm_raw = data["qemu"].get("nvm", nvm_raw)
        nvm_raw = {**{k: own_nvm[k] for k in FLASH_FIELDS if k in own_nvm}, **nvm_raw}
    elif data["runners"][0] == "qemu":
        emulate = True  # an emulator-only board is always its emulated variant
    u = hal["uart"]
    mem = data["memory"]
    qemu = data.get("qemu", {})
    renode = data.get("renode", {})
    return Board(
        name=data["name"], description=data["description"], core=data["core"], clock_hz=data["clock_hz"],
        flash=Region(mem["flash"]["origin"], parse_size(mem["flash"]["size"])),
        ram=Region(mem["ram"]["origin"], parse_size(mem["ram"]["size"])),
        nvm=_nvm(nvm_raw), real_nvm=None if nvm_raw is own_nvm else _nvm(own_nvm),
        stack_size=parse_size(data["stack_size"]),
        uart=Uart(driver=u["driver"], base=u["base"], baudrate=u.get("baudrate", 115200),
                  tx_pin=u.get("tx_pin"), rx_pin=u.get("rx_pin")),
        tick=hal["tick"], exit=hal["exit"], runners=tuple(data["runners"]), emulated=emulate,
        pyocd_target=data.get("pyocd", {}).get("target"),
        serial_baudrate=data.get("pyocd", {}).get("baudrate", u.get("baudrate", 115200)),
        qemu_machine=qemu.get("machine"), instructions_per_tick=qemu.get("instructions_per_tick"),
        renode_platform=renode.get("platform"), renode_uart=renode.get("uart"), path=file,
        energy=_energy(file, data, data["clock_hz"]),
    )


def _nvm(raw: dict) -> Nvm:
    return Nvm(origin=raw["origin"], size=parse_size(raw["size"]), driver=raw["driver"],
               page_size=parse_size(raw["page_size"]), **{k: raw[k] for k in FLASH_FIELDS if k in raw})


def with_nvm_region(board: Board, size: int) -> Board:
    """`board` with an NVM region of `size` bytes (whole pages, at least two): the board's own NVM becomes the
    last `size` bytes of its flash (when it lies in the flash), and the NVM the firmware uses (the emulated one
    of the QEMU variant) gets the same size at its origin. The image's flash budget shrinks accordingly."""
    page = board.flash_nvm.page_size
    if size % page or size < 2 * page:
        raise BoardError(f"NVM region {size} B: give whole pages of {page} B, at least two")
    own = board.flash_nvm
    if own.mapped and board.flash.origin <= own.origin < board.flash.end:
        if size >= board.flash.size:
            raise BoardError(f"NVM region {size:,} B does not fit {board.name}'s {board.flash.size:,} B of flash")
        own = dataclasses.replace(own, origin=board.flash.end - size, size=size)
    else:
        own = dataclasses.replace(own, size=size)
    nvm = own if board.real_nvm is None else dataclasses.replace(board.nvm, size=size)
    return dataclasses.replace(board, nvm=nvm, real_nvm=None if board.real_nvm is None else own)


def load_board(name: str, emulate: bool = False) -> Board:
    """Load `boards/<name>.yaml` (or a path to a board file)."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return load_board_file(name, emulate)
    file = BOARDS_DIR / f"{name}.yaml"
    if not file.exists():
        raise BoardError(f"unknown board '{name}'. Known boards: {', '.join(available_boards())} "
                         f"(or give the path to a board .yaml file).")
    return load_board_file(file, emulate)
