"""Code generator: int8 .tflite -> plain C library, bit-exact with TensorFlow Lite Micro's reference kernels.

Three stages with typed hand-offs:
  read_model(path) -> Graph          .tflite -> op objects (shape arithmetic folded away);
                                     fuse(graph) merges CONV_2D -> ADD and channel
                                     STRIDED_SLICE -> DEPTHWISE_CONV_2D, schedule(graph) reorders for memory
  plan_memory(graph) -> Plan         tensor lifetimes -> arena offsets, in-place ops, live ranges per step
  emit_library(graphs, plans, dir)   Graph + Plan -> C files rendered from firmware_templates/
`generate(models, out_dir)` runs them for one or many models into one library and measures it (GenerateReport,
also written as report.json); `tinyexit.conformance` compares a library with tflite_micro.
"""
from tinyexit.codegen.fuse import fuse
from tinyexit.codegen.generate import GenerateReport, Link, ModelFigures, generate
from tinyexit.codegen.ir import OPS, Graph, Op, Tensor
from tinyexit.codegen.plan import Plan, plan_memory
from tinyexit.codegen.reader import read_model
from tinyexit.codegen.schedule import schedule

SUPPORTED_OPS = tuple(sorted(OPS))

__all__ = ["fuse", "schedule", "GenerateReport", "Link", "ModelFigures", "generate", "Graph", "Op", "Tensor", "Plan",
           "plan_memory", "read_model", "SUPPORTED_OPS", "OPS"]
