"""Physical quantities written with their unit: "100uF", "3.3mA", "85ms", "1.8V", "1mW" -> SI floats.

One parser for board files (`energy:`), harvester specs (`constant:1mW`) and CLI options (`--capacitor 100uF`).
A bare number is taken in the base unit ("0.0033" with unit "A" is 3.3 mA). Prefixes: p n u µ m k M.
"""
from __future__ import annotations

import math
import re

from tinyexit.errors import TinyexitError

PREFIXES = {"p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6}
# The units tinyexit reads, with what they measure (for messages).
UNITS = {"A": "current", "V": "voltage", "F": "capacitance", "s": "time", "W": "power", "J": "energy",
         "Hz": "frequency"}

_NUMBER = r"[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?"


def parse_quantity(value: str | int | float, unit: str, what: str = "value") -> float:
    """`value` ("3.3mA", "100 uF", "0.5", 2) in SI units of `unit`. A bad value raises a one-line
    TinyexitError naming `what` and an example. Negative and non-finite values are refused."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}")
    if isinstance(value, bool):
        raise TinyexitError(f"{what}: {value!r} is not a {UNITS[unit]}; write a number with its unit, e.g. "
                            f"{example(unit)}.")
    if isinstance(value, (int, float)):
        number, scale = float(value), 1.0
    else:
        m = re.fullmatch(rf"\s*({_NUMBER})\s*([pnuµmkM]?)({re.escape(unit)})?\s*", str(value))
        if not m or (m.group(2) and not m.group(3)):
            raise TinyexitError(f"{what}: {value!r} is not a {UNITS[unit]} in {unit}; write a number with its "
                                f"unit, e.g. {example(unit)}.")
        number, scale = float(m.group(1)), PREFIXES[m.group(2)]
    out = number * scale
    if not math.isfinite(out) or out < 0:
        raise TinyexitError(f"{what}: {value!r} must be a finite, non-negative {UNITS[unit]}, e.g. "
                            f"{example(unit)}.")
    return out


def example(unit: str) -> str:
    return {"A": "3.3mA", "V": "1.8V", "F": "100uF", "s": "85ms", "W": "1mW", "J": "288uJ",
            "Hz": "64MHz"}[unit]


def format_quantity(value: float, unit: str, digits: int = 3) -> str:
    """0.0033, "A" -> "3.3mA" (for reports and plot labels)."""
    if value == 0:
        return f"0{unit}"
    for prefix in ("M", "k", "", "m", "u", "n", "p"):
        if abs(value) >= PREFIXES[prefix] * 0.9995:
            return f"{value / PREFIXES[prefix]:.{digits}g}{prefix}{unit}"
    return f"{value:.{digits}g}{unit}"
