"""The legacy-Keras switch: tfmot (pruning, quantization-aware training) only works with tf_keras, which
TensorFlow selects only when TF_USE_LEGACY_KERAS=1 is set before it is first imported (docs/DESIGN.md 4).
The rest of tinyexit uses Keras 3. So tfmot work runs in a child Python started with the switch set,
whatever the caller has already imported; parent and child exchange plain files (a graph spec, numpy
arrays, JSON), never Keras objects. The caller never sets anything.

    run_legacy(module, args, log=print)   run `python -m module args...` with TF_USE_LEGACY_KERAS=1,
                                          streaming its progress lines to `log`
    require_legacy()                      in the child: refuse to run without the switch
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Sequence

from tinyexit.errors import TinyexitError

SWITCH = "TF_USE_LEGACY_KERAS"


def legacy_env() -> dict[str, str]:
    env = dict(os.environ)
    env[SWITCH] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_legacy(module: str, args: Sequence[str], *, log: Callable[[str], None] | None = print,
               what: str = "tfmot worker") -> None:
    """Run `python -m module *args` in a child with legacy Keras selected; its stdout lines are progress
    (passed to `log`), its stderr is kept and shown when it fails."""
    log = log or (lambda _s: None)
    cmd = [sys.executable, "-m", module, *map(str, args)]
    proc = subprocess.Popen(cmd, env=legacy_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import threading
    err: list[str] = []
    t = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    t.start()
    for line in proc.stdout:
        log(line.rstrip("\n"))
    proc.wait()
    t.join(timeout=5)
    if proc.returncode != 0:
        tail = "".join(err)[-3000:]
        if "TinyexitError:" in tail:     # a user-fixable problem found in the child: pass its message on
            raise TinyexitError(tail.rsplit("TinyexitError:", 1)[1].strip())
        raise TinyexitError(f"the {what} (legacy Keras, tensorflow-model-optimization) failed with exit status "
                            f"{proc.returncode}:\n{tail}\nCheck that tf-keras and tensorflow-model-optimization are "
                            f"installed (scripts/setup.sh installs them).")


def require_legacy() -> None:
    """Called first in a child module: tf.keras must be tf_keras there."""
    if os.environ.get(SWITCH) != "1":
        raise SystemExit(f"this module needs {SWITCH}=1 set before TensorFlow is imported; run it through "
                         f"tinyexit.legacy_keras.run_legacy")
    if "tensorflow" in sys.modules:
        import tensorflow as tf
        if not tf.keras.__name__.startswith("tf_keras"):
            raise SystemExit("TensorFlow was imported with Keras 3 before the switch took effect")
