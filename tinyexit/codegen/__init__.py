"""Code generator: int8 .tflite -> plain C library, bit-exact with TensorFlow Lite Micro's reference kernels.

Three stages with typed hand-offs: `read_model` (.tflite -> Graph of op objects; `fuse` then merges
CONV_2D -> ADD pairs into one step), `plan_memory`
(lifetimes -> arena offsets), `emit_library` (Graph + Plan -> C from firmware_templates/).
`generate` runs all three for one or many models and measures the result.
"""
from tinyexit.codegen.fuse import fuse
from tinyexit.codegen.generate import GenerateReport, ModelFigures, generate, models_from_run
from tinyexit.codegen.ir import OPS, Graph, Op, Tensor
from tinyexit.codegen.plan import Plan, plan_memory
from tinyexit.codegen.reader import read_model

SUPPORTED_OPS = tuple(sorted(OPS))

__all__ = ["fuse", "GenerateReport", "ModelFigures", "generate", "models_from_run", "Graph", "Op", "Tensor", "Plan",
           "plan_memory", "read_model", "SUPPORTED_OPS", "OPS"]
