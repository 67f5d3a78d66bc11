"""tinyexit: early-exit TinyML from data to microcontroller firmware.

Stages (data flows one way): data -> models -> train -> quantize -> codegen -> build -> targets -> bench.
Each stage is an importable module; the CLI (`tinyexit.cli`) is a thin layer over them.
"""
__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (CPU feature notices, oneDNN) drowns the tool's own output; users can
# still raise it by setting the variable themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
