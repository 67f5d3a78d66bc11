"""Memory honesty of the cortex_m4 kernels (issue 13, part 5): their work space (tables, im2col columns) is
planned inside the arena, live only during its own step, and the RAM the report states is what the linked
image reserves.

- On the emulated Cortex-M4 each step of each model runs once with every arena byte outside live[i]
  overwritten before it; afterwards, any byte changed outside live[i] and the step's planned work space
  (report.json `step_work`) is counted: a kernel writing past the space the planner gave it is caught, and
  the outputs (still byte-exact with tflite_micro) show the kernels rebuild their tables at every call. A
  library copy of one model whose work table is emptied must be caught (the check can fail).
- The linked image: `tx_arena` is TX_ARENA_SIZE = report.json `arena_bytes`, and the .data/.bss the linker
  map attributes to the kernel objects is report.json `static_scratch_bytes`.
Models: both conformance models (KWS: 10x4 im2col conv, 1x1 convs, 3x3 depthwise in place; ResNet-8: 3x3
convs and fused CONV_2D+ADD), a 3x3 conv and a depthwise conv in place (ring + work space), and a pruned
model on the sparse conv kernel (im2col columns, ring)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import conformance_model
from tests.kernels_m4._firmware import Job, guard_counts, parse, require_emulator, run_jobs
from tests.kernels_m4.test_kernels_m4 import conv, dw
from tests.kernels_m4.test_sparse_m4 import _ring_model
from tests.ops._harness import Case, convert

pytestmark = pytest.mark.emulator
SHRUNK = "ring_conv_shrunk"   # the same model as ring_conv, its work table emptied: must be caught


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    require_emulator()
    from tinyexit.build import library_memory
    from tinyexit.codegen import generate, read_model
    from tinyexit.quantize import convert_int8

    work = tmp_path_factory.mktemp("scratch_m4")
    paths = {"kws": conformance_model("kws_ref_model.tflite"),
             "resnet": conformance_model("pretrainedResnet_quant.tflite")}
    for name, build, shape in [("ring_conv", conv((5, 6, 8), 8, 3, 1, "same"), (5, 6, 8)),
                               ("ring_dw", dw((6, 5, 8), 3, 1, "same"), (6, 5, 8))]:
        p = work / f"{name}.tflite"
        p.write_bytes(convert(Case(name, build, shape)))
        paths[name] = p
    rng = np.random.default_rng(3)
    rep = rng.normal(size=(8, 5, 6, 96)).astype(np.float32)
    p = work / "sparse.tflite"
    p.write_bytes(convert_int8(_ring_model(), rep))
    paths["sparse"] = p
    paths[SHRUNK] = paths["ring_conv"]
    lib = work / "lib"
    report = generate(paths, lib, kernels="cortex_m4", compare_tflm=False)
    doc = json.loads((lib / "report.json").read_text())
    jobs = []
    for name, path in paths.items():
        g = read_model(path)
        x = rng.integers(-128, 128, size=(2, int(np.prod(g.input.shape[1:])))).astype(np.int8)
        steps = doc["models"][name]["step_work"]
        if name == SHRUNK:
            steps = [[off, 0] for off, _ in steps]
        jobs.append(Job(name, x, g.output.nbytes, chunked=0, work=tuple(map(tuple, steps))))
    run, fw = run_jobs(lib, jobs, work, **library_memory(lib))
    got, _ = parse(run.output, jobs)
    return dict(paths=paths, jobs={j.name: j for j in jobs}, got=got, guard=guard_counts(run.output, jobs),
                report=report, doc=doc, fw=fw)


@pytest.mark.parametrize("name", ["kws", "resnet", "ring_conv", "ring_dw", "sparse"])
def test_kernels_write_only_live_ranges_and_their_work_space(guarded, name):
    from tinyexit.conformance import tflm_outputs

    steps = guarded["doc"]["models"][name]["step_work"]
    assert any(size for _, size in steps), "the model should use kernel work space"
    assert guarded["guard"][name] == 0
    job = guarded["jobs"][name]
    np.testing.assert_array_equal(guarded["got"][name], tflm_outputs(guarded["paths"][name], job.inputs))


def test_the_guard_catches_a_kernel_writing_outside_its_plan(guarded):
    assert guarded["guard"][SHRUNK] > 0


def test_reported_ram_is_what_the_image_reserves(guarded):
    from tinyexit.toolchain import symbol_size

    report, sizes, doc = guarded["report"], guarded["fw"].sizes, guarded["doc"]
    assert symbol_size(guarded["fw"].elf, "tx_arena") == report.arena_bytes == sizes.arena
    assert report.static_scratch_bytes is not None and sizes.kernel_static == report.static_scratch_bytes
    assert doc["ram_bytes"] == report.arena_bytes + report.static_scratch_bytes
    # the work space is inside the arena: the largest one planned is what the report states
    assert report.scratch_bytes == max(size for m in doc["models"].values() for _, size in m["step_work"])
    assert sizes.arena_scratch == report.scratch_bytes > 0
    for m in doc["models"].values():
        for off, size in m["step_work"]:
            assert off + size <= m["arena_bytes"] <= report.arena_bytes
