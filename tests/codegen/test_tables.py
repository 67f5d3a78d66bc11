"""The step / units / live tables: running every step unit by unit in chunks, with every arena byte outside
the live ranges overwritten before each chunk, gives the same bytes as tx_invoke."""
import numpy as np
import pytest

from tinyexit.codegen import fuse, plan_memory, read_model
from tinyexit.conformance import run_host


@pytest.mark.parametrize("name", ["kws", "resnet"])
@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_steps_with_scrambled_dead_memory(conformance_lib, rng, name, chunk):
    path = conformance_lib["paths"][name]
    g = read_model(path)
    x = rng.integers(-128, 128, size=(6, *g.input.shape[1:])).astype(np.int8)
    whole = run_host(conformance_lib["exe"], name, x, g.output.nbytes)
    stepped = run_host(conformance_lib["exe"], name, x, g.output.nbytes, chunk=chunk, scramble=True)
    np.testing.assert_array_equal(stepped, whole)


@pytest.mark.parametrize("name", ["kws", "resnet"])
def test_live_ranges_cover_each_steps_operands(conformance_lib, name):
    g = fuse(read_model(conformance_lib["paths"][name]))
    plan = plan_memory(g)
    for op in g.ops:
        live = plan.live[op.index]
        for t in op.inputs + op.outputs:
            lo, size = plan.offsets[t], g.tensors[t].nbytes
            assert any(a <= lo and lo + size <= a + s for a, s in live), (op.index, t)
        assert all(a + s <= plan.arena_bytes for a, s in live)


def test_scramble_detects_a_missing_live_range(conformance_lib, tmp_path, rng):
    """Guard on the test above: with one live range dropped from the tables the scrambled run must differ."""
    import re
    import shutil

    from tinyexit.conformance import build_host

    lib = tmp_path / "lib"
    shutil.copytree(conformance_lib["dir"], lib)
    src = (lib / "tx_model_kws.c").read_text()
    # Make every live range of every step 1 byte long: the data needed by later steps is then scrambled.
    src2 = re.sub(r"\{ (\d+)u, (\d+)u \}", lambda m: "{ %su, 1u }" % m.group(1), src)
    assert src2 != src
    (lib / "tx_model_kws.c").write_text(src2)
    (lib / "tx_host").unlink()
    exe = build_host(lib)
    g = read_model(conformance_lib["paths"]["kws"])
    x = rng.integers(-128, 128, size=(4, *g.input.shape[1:])).astype(np.int8)
    whole = run_host(exe, "kws", x, g.output.nbytes)
    stepped = run_host(exe, "kws", x, g.output.nbytes, chunk=1, scramble=True)
    assert (stepped != whole).any()


def test_plain_mode_same_bytes_and_tables(conformance_lib, rng, tmp_path):
    """No in-place ops, no fusion, file order: a bigger arena, the same bytes, tables still complete."""
    from tinyexit.codegen import generate
    from tinyexit.conformance import build_host

    report = generate(conformance_lib["paths"], tmp_path / "lib", inplace=False, fuse_ops=False, reorder=False,
                      measure=False, compare_tflm=False)
    exe = build_host(tmp_path / "lib")
    for name, path in conformance_lib["paths"].items():
        assert not report.models[name].inplace_ops
        assert report.models[name].arena_bytes > conformance_lib["report"].models[name].arena_bytes
        g = read_model(path)
        x = rng.integers(-128, 128, size=(5, *g.input.shape[1:])).astype(np.int8)
        want = run_host(conformance_lib["exe"], name, x, g.output.nbytes)
        np.testing.assert_array_equal(run_host(exe, name, x, g.output.nbytes), want)
        np.testing.assert_array_equal(run_host(exe, name, x, g.output.nbytes, chunk=2, scramble=True), want)
