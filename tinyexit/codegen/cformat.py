"""Small formatting helpers for generated C: identifiers, literals, constant arrays."""
from __future__ import annotations

import re

import numpy as np


def c_ident(name: str) -> str:
    """A C identifier from a model name: letters, digits and underscores; never starts with a digit."""
    s = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not s or s[0].isdigit():
        s = "m_" + s
    return s


def c_float(x: float) -> str:
    """A float32 literal that reads back to exactly the same float32 (9 significant digits)."""
    v = float(np.float32(x))
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"cannot write {v} as a C float constant")
    s = f"{v:.9g}"
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f"


def c_int(x: int) -> str:
    x = int(x)
    if x == -(1 << 31):
        return "(-2147483647 - 1)"  # the literal 2147483648 does not fit int32
    return str(x)


def c_array(ctype: str, name: str, values, per_line: int = 16, storage: str = "static const") -> str:
    vals = [c_int(v) for v in np.asarray(values).ravel().tolist()]
    if not vals:
        vals = ["0"]  # C99 forbids empty arrays; nothing reads this element
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n  ".join(lines)
    return f"{storage} {ctype} {name}[{len(vals)}] = {{\n  {body}\n}};"
