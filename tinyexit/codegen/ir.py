"""The graph IR handed from the reader to the planner and the emitter.

A Graph is a list of tensors and a list of op objects in execution order. Each op type lives in its own
module under `tinyexit.codegen.ops`, registers itself under its TFLite name, and knows how to read itself
from the flatbuffer (`from_tflite`), its MACs, its work units, its scratch needs and its C call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from tinyexit.errors import UnsupportedModelError


@dataclass(frozen=True, eq=False)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str                      # "int8", "int32", "float32", ...
    scales: tuple[float, ...]       # float32 values (as Python floats); () when not quantized
    zero_points: tuple[int, ...]
    quantized_dim: int
    data: np.ndarray | None         # constant contents, or None for activations

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    @property
    def nbytes(self) -> int:
        return self.elements * {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4,
                                "int64": 8}.get(self.dtype, 4)

    @property
    def scale(self) -> float:
        return self.scales[0] if self.scales else 0.0

    @property
    def zero_point(self) -> int:
        return self.zero_points[0] if self.zero_points else 0

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class OpContext:
    """What an op's `from_tflite` gets: its position, its tensors and its decoded builtin options."""
    index: int
    name: str
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]         # tensor ids (-1 for an omitted optional input)
    outputs: tuple[int, ...]
    options: object | None          # the tflite.*Options object, already initialised, or None

    def refuse(self, problem: str) -> UnsupportedModelError:
        return UnsupportedModelError(
            f"op {self.index} ({self.name}): {problem}; change the model so this op takes a supported form "
            f"(tinyexit.codegen.SUPPORTED_OPS)")

    def tensor(self, pos: int) -> Tensor:
        return self.tensors[self.inputs[pos]]

    def out(self, pos: int = 0) -> Tensor:
        return self.tensors[self.outputs[pos]]

    def require_int8(self, *tensors: Tensor) -> None:
        for t in tensors:
            if t.dtype != "int8":
                raise self.refuse(f"tensor '{t.name}' is {t.dtype}, only int8 activations are supported")
            if len(t.scales) != 1:
                raise self.refuse(f"tensor '{t.name}' has no per-tensor int8 quantization")

    def activation(self) -> str:
        code = getattr(self.options, "FusedActivationFunction", lambda: 0)()
        names = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
        if code not in names:
            raise self.refuse(f"fused activation code {code} is not supported (NONE, RELU, RELU6 are)")
        return names[code]


C_TYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4, "float": 4}


@dataclass(frozen=True)
class CArray:
    """One constant array of the generated model file."""
    ctype: str
    name: str
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes of the array as the C declaration stores it (values may be held in a wider numpy type)."""
        return C_TYPE_BYTES[self.ctype] * int(np.asarray(self.values).size)


@dataclass(frozen=True, eq=False)
class Op:
    """Base of every op. Subclasses are frozen dataclasses of their parameters."""
    index: int
    inputs: tuple[int, ...]         # activation tensor ids read by the kernel
    outputs: tuple[int, ...]

    name: ClassVar[str] = ""
    kernel: ClassVar[str | None] = None     # C source (firmware_templates/kernels/<variant>/<kernel>.c.j2)

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "Op":
        raise NotImplementedError

    def macs(self) -> int:
        return 0

    def units(self) -> int:
        """Work units of the step (output rows for row-split ops, else 1)."""
        return 1

    def is_alias(self) -> bool:
        """True when the output is the input's bytes reinterpreted (no code, same arena range)."""
        return False

    def inplace_inputs(self) -> tuple[int, ...]:
        """Positions of the inputs whose arena range the output may overwrite, starting at the same offset
        (the output is never larger; the kernel reads every input byte before it is overwritten)."""
        return ()

    def scratch_bytes(self, inplace: bool) -> int:
        """Bytes the op keeps across its units (an in-place ring): live during the whole step."""
        return 0

    def work_bytes(self, kernels: str) -> int:
        """Bytes of kernel work space (tables, im2col columns) the op's kernel in variant `kernels` uses
        within one call and never after: planned in the arena after the ring, dead between calls."""
        return 0

    def work_offset(self, inplace: bool, kernels: str) -> int:
        """Where the work space starts in the op's scratch: after the ring (word-aligned), unless the kernel
        never uses the ring in that variant and starts over it (Conv2D)."""
        return (self.scratch_bytes(inplace) + 3) // 4 * 4

    def constants(self, prefix: str) -> list[CArray]:
        return []

    def params_decl(self, prefix: str, inplace: bool) -> str:
        """C declaration(s) of the op's const params struct."""
        return ""

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        """C statement running units [ub, ue) of the op; `ins`/`out`/`scratch` are C pointer expressions."""
        raise NotImplementedError


OPS: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    OPS[cls.name] = cls
    return cls


@dataclass(frozen=True, eq=False)
class Graph:
    name: str
    path: str
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    tflm_ops: tuple[str, ...] = field(default=())

    @property
    def input(self) -> Tensor:
        return self.tensors[self.inputs[0]]

    @property
    def output(self) -> Tensor:
        return self.tensors[self.outputs[0]]

    def macs(self) -> int:
        return sum(op.macs() for op in self.ops)

    def weight_bytes(self) -> int:
        return sum(a.nbytes for i, op in enumerate(self.ops) for a in op.constants(f"m_{i}"))


def pads_same(in_size: int, out_size: int, stride: int, k: int, padding: str) -> int:
    """TFLM ComputePaddingHeightWidth: leading padding (the extra odd pixel goes to the trailing side)."""
    if padding == "VALID":
        return 0
    total = (out_size - 1) * stride + k - in_size
    return max(total, 0) // 2


def out_size(in_size: int, stride: int, k: int, padding: str) -> int:
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    return (in_size - k + stride) // stride


def padding_name(ctx: OpContext) -> str:
    code = ctx.options.Padding()
    if code not in (0, 1):
        raise ctx.refuse(f"padding code {code} is not supported (SAME and VALID are)")
    return "SAME" if code == 0 else "VALID"

