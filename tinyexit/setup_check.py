"""`python -m tinyexit.setup_check`: confirm the environment scripts/setup.sh built is complete."""
from __future__ import annotations

import importlib
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"  # present in a checkout, not in a wheel

PYTHON_MODULES = ["tensorflow", "keras", "numpy", "jinja2", "serial", "tflite", "ai_edge_litert",
                  "tflite_micro", "matplotlib", "tqdm", "yaml", "jsonschema", "pyocd"]
PROGRAMS = {
    "arm-none-eabi-gcc": "apt-get install -y --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "qemu-system-arm": "apt-get install -y --no-install-recommends qemu-system-arm",
    "espeak-ng": "apt-get install -y --no-install-recommends espeak-ng",
    "gcc": "apt-get install -y gcc",
}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_mismatches(lock: Path = LOCK) -> list[str]:
    """Packages whose installed version is not the locked one (or that are missing)."""
    if not lock.is_file():
        return []
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}
    problems = []
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        have = installed.get(_canonical(name))
        if have != version:
            problems.append(f"python package {name}: locked {version}, installed {have or 'nothing'}"
                            f" (re-run `bash scripts/setup.sh`)")
    return problems


def missing() -> list[str]:
    problems = lock_mismatches()
    for mod in PYTHON_MODULES:
        try:
            importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - report any import failure
            problems.append(f"python module {mod}: {e.__class__.__name__}: {e}")
    for prog, how in PROGRAMS.items():
        if shutil.which(prog) is None:
            problems.append(f"program {prog}: install with `{how}`")
    return problems


def main() -> int:
    problems = missing()
    if problems:
        print("setup incomplete:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("setup: ok (python deps, arm-none-eabi-gcc, qemu-system-arm, espeak-ng)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
