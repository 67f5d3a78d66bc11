"""Fused, row-streamed conv chains (tinyexit.codegen.stream_plan, generate(plan="fused")): the chains found,
the arena they save, and the outputs of the fused library byte for byte equal to tflite_micro's (host build of
both kernel variants; one emulated Cortex-M4 run)."""
import json

import numpy as np
import pytest

from tests.codegen._random_models import RandomModel
from tests.conftest import require_program
from tinyexit.codegen import generate, read_model
from tinyexit.codegen.fuse import fuse_conv_add
from tinyexit.codegen.ops._common import M4, a4
from tinyexit.codegen.prepared import with_prepared_tables
from tinyexit.codegen.stream_chain import StreamChain, row_bytes
from tinyexit.codegen.stream_plan import find_chains, stream_graph
from tinyexit.conformance import build_host, emulated_outputs, run_host, tflm_outputs
from tinyexit.errors import TinyexitError


def _dscnn(seed: int, *, pool: bool = True, expand: bool = False, big: bool = False, n_inputs: int = 6):
    """A DS-CNN-like model: a first conv (strided or not), 2-3 depthwise 3x3 + pointwise blocks (one
    depthwise strided sometimes; `expand`: a pointwise that changes the channel count, a stage of its own),
    then a global average pool (or, `pool=False`, the last map, with 24 channels inside the chain and 4 at
    its end, reshaped) and a FULLY_CONNECTED. `big`: no stride and 9 columns, so the pool sums more than 256
    pixels (int32 sums)."""
    rng = np.random.default_rng(seed)
    m = RandomModel(rng, str(rng.choice(["loguniform", "inexact"])), n_inputs, tag=f"ds{seed}")
    h, w = int(rng.integers(30, 48)), 9 if big else int(rng.integers(3, 8))   # tall: row windows beat whole maps
    x = m.input((1, h, w, int(rng.integers(1, 3))))
    c = 8
    x = m.conv(x, c, (int(rng.integers(2, 5)), int(rng.integers(1, 4))), (1 if big else int(rng.integers(1, 3)), 1),
               "same" if big else str(rng.choice(["same", "valid"])))
    blocks = int(rng.integers(2, 4))
    for b in range(blocks):
        _, h, w, _ = m.g.spec(x).shape
        stride = (2, 2) if b == 1 and rng.random() < 0.5 and not big else (1, 1)
        valid = stride == (1, 1) and min(h, w) >= 4 and rng.random() < 0.4
        x = m.depthwise(x, 1, (3, 3), stride, "valid" if valid else "same")
        c = 12 if expand and b == 0 else c
        if not pool:    # expand, then project: the chain's output is smaller than its inside
            c = 4 if b == blocks - 1 else 24
        x = m.conv(x, c, (1, 1), (1, 1), "same")
    _, h, w, c = m.g.spec(x).shape
    if pool:
        x = m.pool(x, "avg", (h, w), (1, 1), "valid")
    x = m.reshape(x, (1, int(np.prod(m.g.spec(x).shape))))
    m.fully_connected(x, 6)
    return m.cases()[-1]        # the whole model


def _resnet(seed: int, n_inputs: int = 6):
    """A ResNet-8-like model: a conv, a residual block (two 3x3 convs, ADD of the skip), a strided block
    (3x3 stride 2 and 3x3; a 1x1 stride-2 shortcut; ADD), global average pool, FULLY_CONNECTED."""
    rng = np.random.default_rng(seed)
    m = RandomModel(rng, str(rng.choice(["loguniform", "inexact"])), n_inputs, tag=f"rn{seed}")
    x = m.input((1, int(rng.integers(16, 24)), int(rng.integers(4, 9)), 3))
    x = m.conv(x, 8, (3, 3), (1, 1), "same")
    b = m.conv(m.conv(x, 8, (3, 3), (1, 1), "same"), 8, (3, 3), (1, 1), "same")
    x = m.add(x, b, x)
    b = m.conv(m.conv(x, 16, (3, 3), (2, 2), "same"), 16, (3, 3), (1, 1), "same")
    x = m.add(m.conv(x, 16, (1, 1), (2, 2), "same"), b, x)
    _, h, w, _ = m.g.spec(x).shape
    x = m.pool(x, "avg", (h, w), (1, 1), "valid")
    m.fully_connected(m.reshape(x, (1, 16)), 5)
    return m.cases()[-1]


def _check(case, tmp_path, kernels, plan="fused"):
    model = tmp_path / f"{case.name}.tflite"
    model.write_bytes(case.model)
    rep = generate({"m": model}, tmp_path / f"lib_{kernels}", kernels=kernels, plan=plan, measure=False,
                   compare_tflm=False)
    layers = generate({"m": model}, tmp_path / f"layers_{kernels}", kernels=kernels, measure=False,
                      compare_tflm=False)
    got = run_host(build_host(tmp_path / f"lib_{kernels}"), "m", case.inputs, read_model(model).output.nbytes)
    np.testing.assert_array_equal(got, tflm_outputs(model, case.inputs))
    return rep.models["m"], layers.models["m"]


@pytest.mark.parametrize("kernels", ["reference", M4])
@pytest.mark.parametrize("seed,pool,expand,big,plan", [(1, True, False, False, "fused"), (2, True, True, False, "fused"),
                                                       (3, False, False, False, "fused"), (4, True, False, True, "fused"),
                                                       (5, True, True, False, "fused2"),
                                                       (6, True, False, True, "fused2")])
def test_fused_chain_equals_tflm_on_host(tmp_path, kernels, seed, pool, expand, big, plan):
    fused, layers = _check(_dscnn(seed, pool=pool, expand=expand, big=big), tmp_path, kernels, plan)
    assert fused.plan == plan and len(fused.chains) == 1, fused.chains
    assert ("AVERAGE_POOL_2D" in fused.chains[0]) == pool
    if pool:    # the pool's sums: int16 up to 256 pixels, else int32
        src = (tmp_path / f"lib_{kernels}" / "tx_model_m.c").read_text()
        assert ("tx_chain_pool_add(" in src) == big and ("tx_chain_pool_add_16(" in src) == (not big)
    assert fused.arena_bytes < layers.arena_bytes and layers.plan == "layers"


@pytest.mark.parametrize("kernels", ["reference", M4])
@pytest.mark.parametrize("seed", [11, 12])
def test_fused_residual_blocks_equal_tflm_on_host(tmp_path, kernels, seed):
    fused, layers = _check(_resnet(seed), tmp_path, kernels)
    assert fused.plan == "fused" and fused.chains[0].count("CONV_2D(+ADD)") == 2, fused.chains
    assert fused.arena_bytes < layers.arena_bytes


def test_chain_found_in_resnet_keeps_skip_rows():
    g = stream_graph(fuse_conv_add(read_model("/work/shared/conformance/pretrainedResnet_quant.tflite")))
    chain = g.ops[0]
    assert isinstance(chain, StreamChain) and chain.sink is not None and len(chain.stages) == 9
    # the first block's output (stage 0) is read by a 3x3 conv and, as the skip, by the ADD two stages on
    assert chain.src[:3] == (-1, 0, 1) and chain.res[:3] == (-2, -2, 0)
    assert all(r >= 3 for r in chain.rows[:3]) and max(chain.rows) < 8     # rows, never whole 32-row maps
    # run in place (the planner's choice: the input dies there), the output takes the input's first bytes
    # and later stages' windows input rows no stage reads any more (the emulated runs check the bytes)
    assert chain.out_in and chain.inplace_inputs() == (0,) and sum(w >= 0 for w in chain.in_win) == 2
    moved = sum(a4(chain.rows[k] * row_bytes(chain.members[s[-1]]))
                for k, s in enumerate(chain.stages) if chain.in_win[k] >= 0)
    assert chain.scratch_bytes(True) == chain.scratch_bytes(False) - moved


def test_chain_found_in_kws_and_saves_arena():
    g = read_model("/work/shared/conformance/kws_ref_model.tflite")
    assert [len(c) for c in find_chains(g)] == [10]      # conv, 4 x (depthwise, pointwise), pool
    s = stream_graph(g)
    chain = s.ops[0]
    assert isinstance(chain, StreamChain) and len(s.ops) == len(g.ops) - 9
    assert [len(st) for st in chain.stages] == [1, 2, 2, 2, 2] and chain.rows == (3, 3, 3, 3, 1)
    assert chain.macs() == sum(op.macs() for op in g.ops[:10])
    # windows: 4 x 3 rows of 5 x 64 bytes, the last stage's row, 64 int16 sums (125 pixels)
    assert chain.scratch_bytes(False) == 4 * 3 * 320 + 320 + 2 * 64
    # two rows per call (5-pixel rows): 4-row windows with the calls' phases chosen, not 5
    two = stream_graph(g, "fused2").ops[0]
    assert two.group == (2,) * 5 and two.rows == (4, 4, 4, 4, 2) and 1 in two.first


def test_kws_fused_ram_within_5000_bytes_with_cortex_m4_kernels(tmp_path):
    """The goal of issue 17 (arena + static scratch <= 5,000 B): the in-place 1x1s work in a row of their
    source window that no reader needs any more, the earlier stages' kernels in the last stage's window (its
    rows live only within the last stage's calls); the emulated runs above check the bytes."""
    rep = generate({"kws": "/work/shared/conformance/kws_ref_model.tflite"}, tmp_path / "lib", kernels=M4,
                   plan="fused", compare_tflm=False)
    assert rep.arena_bytes + rep.static_scratch_bytes <= 5000, (rep.arena_bytes, rep.static_scratch_bytes)
    src = (tmp_path / "lib" / "tx_model_kws.c").read_text()
    assert src.count("out, out, fs, 0, ub, ue);") == 4          # every pointwise conv in a free source row
    chain = stream_graph(with_prepared_tables(read_model("/work/shared/conformance/kws_ref_model.tflite")))
    assert chain.ops[0].free == (False, True, True, True, True)   # stage 0 reads the chain's input


def test_default_plan_is_layer_by_layer_and_report_says_which(tmp_path):
    src = "/work/shared/conformance/kws_ref_model.tflite"
    a = generate({"kws": src}, tmp_path / "a", measure=False, compare_tflm=False)
    b = generate({"kws": src}, tmp_path / "b", plan="fused", measure=False, compare_tflm=False)
    assert a.plan == "layers" and a.models["kws"].plan == "layers" and a.models["kws"].chains == []
    doc = json.loads((tmp_path / "b" / "report.json").read_text())
    assert doc["plan"] == "fused" and doc["models"]["kws"]["plan"] == "fused"
    assert b.models["kws"].arena_bytes < a.models["kws"].arena_bytes
    assert "plan of kws: fused" in b.table() and "plan of kws: layer by layer" in a.table()
    with pytest.raises(TinyexitError, match="unknown plan"):
        generate({"kws": src}, tmp_path / "c", plan="patches", measure=False, compare_tflm=False)


def test_kws_fused_equals_tflm_on_host(tmp_path, rng):
    src = "/work/shared/conformance/kws_ref_model.tflite"
    generate({"kws": src}, tmp_path / "lib", kernels=M4, plan="fused", measure=False, compare_tflm=False)
    x = rng.integers(-128, 128, size=(40, 49, 10, 1)).astype(np.int8)
    got = run_host(build_host(tmp_path / "lib"), "kws", x, 12)
    np.testing.assert_array_equal(got, tflm_outputs(src, x))


@pytest.mark.emulator
def test_fused_chain_equals_tflm_on_emulated_cortex_m4(tmp_path, rng):
    require_program("arm-none-eabi-gcc", "apt-get install -y --no-install-recommends gcc-arm-none-eabi "
                                         "libnewlib-arm-none-eabi")
    require_program("qemu-system-arm", "apt-get install -y --no-install-recommends qemu-system-arm")
    cases = {"ds": _dscnn(2, expand=True, n_inputs=3), "rn": _resnet(11, n_inputs=3)}
    models = {}
    for name, case in cases.items():
        models[name] = tmp_path / f"{name}.tflite"
        models[name].write_bytes(case.model)
    models["kws"] = "/work/shared/conformance/kws_ref_model.tflite"
    models["resnet"] = "/work/shared/conformance/pretrainedResnet_quant.tflite"
    inputs = {**{n: c.inputs for n, c in cases.items()},
              "kws": rng.integers(-128, 128, size=(3, 49, 10, 1)).astype(np.int8),
              "resnet": rng.integers(-128, 128, size=(2, 32, 32, 3)).astype(np.int8)}
    for plan, names in (("fused", list(models)), ("fused2", ["ds", "kws"])):
        rep = generate({n: models[n] for n in names}, tmp_path / plan, kernels=M4, plan=plan, measure=False,
                       compare_tflm=False)
        assert all(m.plan == plan for m in rep.models.values())
        for name in names:
            (tmp_path / f"{plan}_{name}").mkdir()
            got, _ = emulated_outputs(tmp_path / plan, name, inputs[name], work=tmp_path / f"{plan}_{name}")
            np.testing.assert_array_equal(got, tflm_outputs(models[name], inputs[name]), err_msg=f"{plan} {name}")


@pytest.mark.emulator
@pytest.mark.parametrize("plan", ["fused", "fused2"])
def test_fused_chain_writes_only_its_planned_bytes(tmp_path, plan):
    """On the emulated Cortex-M4, each step runs with every arena byte outside its live ranges scrambled; a
    chain that wrote outside its input, output, windows and kernel work space is counted (the guard of
    tests/kernels_m4/test_scratch_m4.py), and the outputs still equal tflite_micro's."""
    from tests.kernels_m4._firmware import Job, guard_counts, parse, require_emulator, run_jobs
    from tinyexit.build import library_memory

    require_emulator()
    models = {"kws": "/work/shared/conformance/kws_ref_model.tflite",
              "resnet": "/work/shared/conformance/pretrainedResnet_quant.tflite"}
    rep = generate(models, tmp_path / "lib", kernels=M4, plan=plan, compare_tflm=False)
    assert all(m.plan == plan for m in rep.models.values())
    doc = json.loads((tmp_path / "lib" / "report.json").read_text())
    rng = np.random.default_rng(5)
    jobs = []
    for name, path in models.items():
        g = read_model(path)
        x = rng.integers(-128, 128, size=(2, int(np.prod(g.input.shape[1:])))).astype(np.int8)
        jobs.append(Job(name, x, g.output.nbytes, chunked=0,
                        work=tuple(map(tuple, doc["models"][name]["step_work"]))))
    run, _ = run_jobs(tmp_path / "lib", jobs, tmp_path, **library_memory(tmp_path / "lib"))
    got, _ = parse(run.output, jobs)
    guard = guard_counts(run.output, jobs)
    for job in jobs:
        assert guard[job.name] == 0, job.name
        np.testing.assert_array_equal(got[job.name], tflm_outputs(models[job.name], job.inputs))
