"""Host build of the checkpointing runtime + a model library, and one boot of it as a process.

One process is one boot: RAM starts empty, the NVM image file is what earlier boots left in it. Power is
cut by the host HAL itself (`TX_CUT_EVENTS` NVM events or `TX_CUT_UNITS` work units, see
firmware_templates/runtime/tx_nvm_file.c and tx_rt_host.c), which ends the process with `_exit`."""
from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tinyexit import toolchain
from tinyexit.errors import TinyexitError
from tinyexit.pipeline import Granularity, Pipeline  # noqa: F401  (Granularity: the campaigns take it from here)

RUNTIME_DIR = toolchain.TEMPLATES / "runtime"
RUNTIME_SOURCES = ("tx_checkpoint.c", "tx_crc32.c", "tx_pipeline.c")
HOST_HAL_SOURCES = ("tx_nvm_file.c", "tx_rt_host.c", "host_main.c")
CUT_EXIT_CODE = 86

# Compile-time flags that break the runtime on purpose (tx_checkpoint.h); the campaign must then fail.
BROKEN_FLAGS = {"single-slot": "TX_BROKEN_SINGLE_SLOT", "no-crc": "TX_BROKEN_NO_CRC", "no-erase": "TX_BROKEN_NO_ERASE",
                "no-vector": "TX_BROKEN_NO_VECTOR", "volatile-low": "TX_BROKEN_VOLATILE_LOW",
                "jit-no-latch": "TX_BROKEN_JIT_NO_LATCH", "trust-first-word": "TX_BROKEN_TRUST_FIRST_WORD",
                "pack-fresh": "TX_BROKEN_PACK_FRESH", "no-move-on": "TX_BROKEN_NO_MOVE_ON"}


def render_pipeline(pipeline: Pipeline, out_dir: str | os.PathLike) -> list[Path]:
    """The pipeline's generated description (tx_pipeline_config.{h,c}, build.render_config) for the
    checkpointing runtime into `out_dir`: tx_pipeline.c builds the runtime's `tx_pipeline` from it."""
    from tinyexit.build import render_config
    return render_config(pipeline.for_runtime(), out_dir)


def build_host(model_dir: str | os.PathLike, pipeline: Pipeline, out_dir: str | os.PathLike, *,
               broken: tuple[str, ...] = (), nvmc_rules: bool = True, slots: int | str = 2, cc: str = "gcc") -> Path:
    """Compiles runtime + host HAL + every .c of the model library in `model_dir` (except its own
    host_main.c) with the description of `pipeline` into `out_dir/tx_powerfail`; reuses the binary when nothing
    changed. `slots`: checkpoint slots (TX_CKPT_SLOTS, >= 2; more = a ring that spreads flash erases), or "fit":
    the whole NVM (a log when it holds three of the largest records, see tx_checkpoint.h)."""
    if slots != "fit" and (not isinstance(slots, int) or slots < 2):
        raise TinyexitError(f"slots must be at least 2 (got {slots}); a single slot loses the checkpoint when a "
                            "cut hits its rewrite")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "tx_model.h").is_file():
        raise TinyexitError(f"{model_dir} has no tx_model.h; point to a generated model library "
                            "(tinyexit generate) ")
    for b in broken:
        if b not in BROKEN_FLAGS:
            raise TinyexitError(f"unknown broken variant {b!r}; choose from {sorted(BROKEN_FLAGS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    config = render_pipeline(pipeline, out_dir)
    model_sources = sorted(p for p in model_dir.glob("*.c") if p.name != "host_main.c")
    sources = [RUNTIME_DIR / s for s in RUNTIME_SOURCES + HOST_HAL_SOURCES] + model_sources + [config[1]]
    defines = {BROKEN_FLAGS[b]: None for b in broken} | ({"TX_NVM_NVMC_RULES": None} if nvmc_rules else {})
    defines |= {"TX_CKPT_SLOTS": "0u" if slots == "fit" else f"{slots}u"} if slots != 2 else {}
    exe = out_dir / "tx_powerfail"
    cmd = toolchain.host_command(sources, exe, include_dirs=[RUNTIME_DIR, model_dir, out_dir], defines=defines,
                                 libs=["m"], cc=cc)
    h = hashlib.sha256(" ".join(cmd).encode())
    for p in sources + [*RUNTIME_DIR.glob("*.h"), *model_dir.glob("*.h"), config[0]]:
        h.update(p.read_bytes())
    stamp = out_dir / "tx_powerfail.sha256"
    if exe.exists() and stamp.exists() and stamp.read_text() == h.hexdigest():
        return exe
    toolchain.run(cmd, "host build of the checkpointing runtime")
    stamp.write_text(h.hexdigest())
    return exe


@dataclass
class Boot:
    """What one boot (process) did."""
    returncode: int
    cut: bool                       # power cut on purpose
    boot: str = ""                  # fresh | resumed | done (as the runtime saw it)
    units: int = 0                  # work units executed
    events: int = 0                 # NVM events (words written + pages erased)
    commits: int = 0
    nvm_bytes: int = 0
    exit_index: int | None = None
    output: bytes | None = None
    stderr: str = ""
    kv: dict = field(default_factory=dict)


def _kv(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)


class HostTarget:
    """A built host executable plus its NVM image file."""

    def __init__(self, exe: str | os.PathLike, nvm_path: str | os.PathLike, threshold: int | None = None):
        """threshold: the policy the boots will run with (a shared pipeline's slots and fingerprint depend on it)."""
        self.exe = Path(exe)
        self.nvm_path = Path(nvm_path)
        self.threshold = threshold
        self.info = self._info()

    def layout(self) -> list[dict]:
        """Per stage: role, exit, offset, name and the work units of each step (`tx_powerfail layout`)."""
        r = subprocess.run([str(self.exe), "layout"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise TinyexitError(f"{self.exe} layout failed: {r.stderr.strip()}")
        rows = []
        for line in r.stdout.splitlines():
            if line.startswith("TXSTAGE"):
                kv = _kv(line)
                rows.append({"role": int(kv["role"]), "exit": int(kv["exit"]), "offset": int(kv["offset"]),
                             "name": kv["name"], "units": [int(u) for u in kv["units"].split(",")]})
        return rows

    def _info(self) -> dict[str, int]:
        scratch = self.nvm_path.with_suffix(".probe")
        scratch.write_bytes(b"\xff" * (16 * 4096))
        try:
            extra = [] if self.threshold is None else [str(self.threshold)]
            r = subprocess.run([str(self.exe), "info", *extra], capture_output=True, text=True, timeout=30,
                               env={**os.environ, "TX_NVM_FILE": str(scratch)})
        finally:
            scratch.unlink()
        if r.returncode != 0 or not r.stdout.startswith("TXINFO"):
            raise TinyexitError(f"{self.exe} info failed: {r.stderr.strip()}")
        return {k: int(v) for k, v in _kv(r.stdout.strip()).items()}

    @property
    def slot_size(self) -> int:
        return self.info["slot_size"]

    @property
    def num_slots(self) -> int:
        return self.info["slots"]

    def newest(self):
        """The newest valid checkpoint in the NVM image (independent parser, slots.py), or None."""
        from tinyexit.intermittent import slots
        return slots.newest_valid(self.nvm_image(), self.slot_size, self.num_slots, bool(self.info.get("log")),
                                  self.info.get("fingerprint"))

    def erase_nvm(self) -> None:
        """A blank NVM (all 0xFF, as erased flash) of exactly the size the runtime needs."""
        self.nvm_path.write_bytes(b"\xff" * self.info["nvm_bytes"])

    def nvm_image(self) -> bytes:
        return self.nvm_path.read_bytes()

    def boot(self, input_path: str | os.PathLike, input_id: int, granularity: Granularity, *,
             cut_events: int | None = None, cut_units: int | None = None, low_energy_units: int | None = None,
             threshold: int | None = None, torn: bool = True, timeout: float = 60, warn_units: str | int | None = None) -> Boot:
        """warn_units: the power-fail warning from that many work units on ("a-b,c": episodes, tx_rt_host.c)."""
        env = {**os.environ, "TX_NVM_FILE": str(self.nvm_path)}
        for k in ("TX_CUT_EVENTS", "TX_CUT_UNITS", "TX_LOW_ENERGY_UNITS", "TX_CUT_TORN", "TX_WARN_UNITS"):
            env.pop(k, None)
        if warn_units is not None:
            env["TX_WARN_UNITS"] = str(warn_units)
        if torn:
            env["TX_CUT_TORN"] = "1"
        if cut_events is not None:
            env["TX_CUT_EVENTS"] = str(cut_events)
        if cut_units is not None:
            env["TX_CUT_UNITS"] = str(cut_units)
        if low_energy_units is not None:
            env["TX_LOW_ENERGY_UNITS"] = str(low_energy_units)
        mode = ("jit-" if granularity.jit else "") + granularity.mode
        cmd = [str(self.exe), "run", str(input_path), str(input_id), mode, str(granularity.every)]
        if threshold is not None:
            cmd.append(str(threshold))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        b = Boot(returncode=r.returncode, cut=r.returncode == CUT_EXIT_CODE, stderr=r.stderr)
        for line in r.stderr.splitlines():
            if line.startswith("TXBOOT"):
                b.boot = _kv(line).get("boot", "")
                b.kv.update(_kv(line))
            elif line.startswith("TXCUT") or line.startswith("TXSTAT"):
                kv = _kv(line)
                b.units = int(kv.get("units", 0))
                b.events = int(kv.get("events", 0))
                b.commits = int(kv.get("commits", 0))
                b.nvm_bytes = int(kv.get("nvm_bytes", 0))
                b.kv["low_marks"] = int(kv.get("low_marks", 0))
                for key in ("erases", "jit_commits", "prepared", "skipped"):
                    if key in kv:
                        b.kv[key] = int(kv[key])
                if "last" in kv:
                    b.kv["last"] = int(kv["last"])
        for line in r.stdout.splitlines():
            if line.startswith("RESULT"):
                kv = _kv(line)
                b.exit_index = int(kv["exit"])
                b.output = bytes.fromhex(kv["hex"])
        return b
