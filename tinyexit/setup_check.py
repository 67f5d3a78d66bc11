"""`python -m tinyexit.setup_check`: confirm the environment scripts/setup.sh built is complete."""
from __future__ import annotations

import importlib
import shutil
import sys

PYTHON_MODULES = ["tensorflow", "keras", "numpy", "jinja2", "serial", "tflite", "ai_edge_litert",
                  "tflite_micro", "matplotlib", "tqdm", "yaml", "jsonschema", "pyocd"]
PROGRAMS = {
    "arm-none-eabi-gcc": "apt-get install -y --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "qemu-system-arm": "apt-get install -y --no-install-recommends qemu-system-arm",
    "espeak-ng": "apt-get install -y --no-install-recommends espeak-ng",
    "gcc": "apt-get install -y gcc",
}


def missing() -> list[str]:
    problems = []
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
