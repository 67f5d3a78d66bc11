"""tinyexit: early-exit TinyML from data to microcontroller firmware.

Stages (data flows one way): data -> models -> train -> quantize -> codegen -> build -> targets -> bench.
Each stage is an importable module; the CLI (`tinyexit.cli`) is a thin layer over them.
"""
__version__ = "0.1.0"
