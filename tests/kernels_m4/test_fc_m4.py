"""FULLY_CONNECTED alone in a cortex_m4 library on the emulated Cortex-M4: the FC shape sweep of tests/ops
(in 1..17, out 1..9, batches, zero points, per-tensor, no bias, exact requantization) without a left-shifting
layer, so tx_fc_blocks4 is built with its short requantization (right shifts only; the all-paths library of
test_kernels_m4 holds a left-shifting layer and builds the general one), plus a small dense autoencoder
(128 -> 128 -> 8 -> 128) whose 128 x 128 layer must stay under 2 estimated cycles per MAC. Byte-exact with
tflite_micro."""
import numpy as np
import pytest

from tests.ops import test_fully_connected as fc
from tests.ops._harness import Case, convert

pytestmark = pytest.mark.emulator


def autoencoder(keras):
    x = keras.Input((128,), batch_size=1)
    y = keras.layers.Dense(128, activation="relu")(x)
    y = keras.layers.Dense(8, activation="relu")(y)
    y = keras.layers.Dense(128)(y)
    return keras.Model(x, y)


CASES = [c for c in fc.SHAPES if c.name != fc.LEFT_SHIFT] + [Case("fc_ae_small", autoencoder, (128,))]


@pytest.fixture(scope="module")
def fc_lib(tmp_path_factory):
    from tests.kernels_m4._firmware import Job, parse, require_emulator, run_jobs

    require_emulator()
    from tinyexit.codegen import generate, read_model
    from tinyexit.codegen.features import kernel_features
    from tinyexit.codegen.plan import plan_memory
    from tinyexit.conformance import structured_inputs

    work = tmp_path_factory.mktemp("fc_m4")
    rng = np.random.default_rng(2)
    paths, jobs = {}, []
    for c in CASES:
        p = work / f"{c.name}.tflite"
        data = convert(c)
        p.write_bytes(c.patch(data) if c.patch else data)
        paths[c.name] = p
        shape = read_model(p).input.shape[1:]
        x = np.concatenate([rng.integers(-128, 128, size=(8, *shape)),
                            structured_inputs(shape, read_model(p).input.zero_point, rng)]).astype(np.int8)
        jobs.append(Job(c.name, x.reshape(len(x), -1), read_model(p).output.nbytes))
    report = generate(paths, work / "lib", kernels="cortex_m4", measure=False, compare_tflm=False)
    run, _ = run_jobs(work / "lib", jobs, work)
    got, _ = parse(run.output, jobs)
    graphs = {n: read_model(p) for n, p in paths.items()}
    feats = kernel_features(graphs, {n: plan_memory(g) for n, g in graphs.items()})
    return dict(work=work, paths=paths, report=report, feats=feats, jobs={j.name: j for j in jobs}, got=got)


def test_fc_library_takes_the_right_shift_requantization(fc_lib):
    assert not fc_lib["feats"].fc_left
    assert "lsl r3, r3, #1" in (fc_lib["work"] / "lib" / "tx_fc.c").read_text()


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_fc_case_matches_tflm_on_m4(fc_lib, name):
    from tinyexit.conformance import tflm_outputs

    job = fc_lib["jobs"][name]
    want = tflm_outputs(fc_lib["paths"][name], job.inputs)
    np.testing.assert_array_equal(fc_lib["got"][name], want)


def test_fc_layers_stay_within_their_cycles_per_mac(fc_lib, tmp_path):
    """Estimated Cortex-M4 cycles (the plugin's TRM timings) per MAC of the small autoencoder's layers."""
    from tinyexit.codegen import read_model
    from tinyexit.conformance import emulated_outputs, tflm_outputs

    path = fc_lib["paths"]["fc_ae_small"]
    g = read_model(path)
    x = np.random.default_rng(0).integers(-128, 128, size=(2, 128)).astype(np.int8)
    got, _, cycles = emulated_outputs(fc_lib["work"] / "lib", "fc_ae_small", x, work=tmp_path, cycles=True,
                                      per_step=True)
    np.testing.assert_array_equal(got, tflm_outputs(path, x))
    steps = np.asarray(cycles, float).reshape(len(x), len(g.ops)).mean(0)
    per_mac = [steps[i] / op.macs() for i, op in enumerate(g.ops)]
    # 128 -> 128 (32 blocks), 128 -> 8 (2 blocks: the call weighs), 8 -> 128 (one pass per block: requantization)
    assert per_mac[0] < 2.0 and per_mac[1] < 2.5 and per_mac[2] < 8.0, per_mac
