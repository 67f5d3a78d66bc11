"""tinyexit: early-exit TinyML from data to microcontroller firmware.

Stages (data flows one way): data -> models -> train -> quantize -> codegen -> build -> targets -> bench.
Each stage is an importable module; the CLI (`tinyexit.cli`) is a thin layer over them.
"""
__version__ = "0.1.0"

from tinyexit import logs as _logs

# TensorFlow's C++ start-up chatter (CPU feature notices, oneDNN) drowns the tool's own output: quiet unless
# the user asks (`tinyexit -v`, TINYEXIT_VERBOSE=1, or TF_CPP_MIN_LOG_LEVEL set by hand).
_logs.install()
