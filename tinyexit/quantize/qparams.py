"""Scale and zero point of an int8 tensor, and the float <-> int8 mappings TFLite uses.

One QParams type for the whole package: quantize writes it, the exit policies and the firmware read it.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class QParams:
    """Scale and zero point of an int8 tensor (real = scale * (q - zero_point))."""
    scale: float
    zero_point: int

    @classmethod
    def of(cls, obj) -> "QParams":
        if isinstance(obj, QParams):
            return obj
        if isinstance(obj, dict):
            return cls(float(obj["scale"]), int(obj["zero_point"]))
        return cls(float(obj.scale), int(obj.zero_point))

    def dequantize(self, q) -> np.ndarray:
        return (np.asarray(q, np.float64) - self.zero_point) * float(self.scale)

    def to_json(self) -> dict:
        return {"scale": float(self.scale), "zero_point": int(self.zero_point)}


def quantize_array(x: np.ndarray, qp: QParams) -> np.ndarray:
    """float -> int8 as TFLite's QUANTIZE does: round half away from zero, add zero point, saturate."""
    v = np.asarray(x, dtype=np.float32) / np.float32(qp.scale)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + qp.zero_point, -128, 127).astype(np.int8)


def dequantize_array(q: np.ndarray, qp: QParams) -> np.ndarray:
    return (np.asarray(q, dtype=np.float32) - qp.zero_point) * np.float32(qp.scale)
