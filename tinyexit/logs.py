"""Quiet by default: TensorFlow's native start-up chatter stays off the tool's output unless asked for.

TensorFlow's C++ libraries print through absl before its logging is initialised, so TF_CPP_MIN_LOG_LEVEL does
not reach every line ("WARNING: All log messages before absl::InitializeLog() ...", "I0000 ... oneDNN custom
operations are on ...", CPU feature notices). `install()` (run when `tinyexit` is imported) therefore
  - sets TF_CPP_MIN_LOG_LEVEL=2 unless the user set it (warnings and info of the C++ side off, errors on),
  - captures file descriptor 2 while `tensorflow` itself is imported and replays every line except the known
    start-up notices (NOISE), so a real error at import time still shows,
  - lowers TensorFlow's and absl's Python loggers to errors once TensorFlow is loaded.
`set_verbose()` (the CLI's -v/--verbose, or TINYEXIT_VERBOSE=1 in the environment) undoes all of it, for this
process and for the child processes it starts.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile

ENV_VERBOSE = "TINYEXIT_VERBOSE"
_SET_LEVEL = False  # whether install() chose TF_CPP_MIN_LOG_LEVEL (set_verbose gives it back)
NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|Could not find cuda drivers on your machine"
    r"|TF-TRT Warning")


def verbose() -> bool:
    return os.environ.get(ENV_VERBOSE, "") not in ("", "0")


def filter_lines(text: str) -> str:
    """The captured start-up output without the known notices (what a user should still see)."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        if verbose():
            self.inner.exec_module(module)
            return
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                self.inner.exec_module(module)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                rest = filter_lines(capture.read().decode("utf-8", "replace"))
                if rest:
                    sys.stderr.write(rest)
                    sys.stderr.flush()
        _quiet_python_loggers()


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level `tensorflow` package only; every other import is untouched."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _quiet_python_loggers() -> None:
    import logging

    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
    except Exception:  # noqa: BLE001 - absl is optional for the quiet path
        pass


def install() -> None:
    """Quiet mode for this process (idempotent; a no-op when verbose was asked for)."""
    if verbose():
        return
    global _SET_LEVEL
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        _SET_LEVEL = True
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
    if "tensorflow" in sys.modules:
        _quiet_python_loggers()


def set_verbose() -> None:
    """Show TensorFlow's logs again (here and in child processes started from now on)."""
    os.environ[ENV_VERBOSE] = "1"
    if _SET_LEVEL:
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]
