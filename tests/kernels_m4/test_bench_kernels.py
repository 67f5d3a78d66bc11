"""`tinyexit bench --kernels`: the run's library is regenerated with the requested kernel variant, the
firmware still equals the host build and the oracle, and the cortex_m4 kernels need fewer instructions."""
import pytest

from tests.test_bench import N_INPUTS, tiny_run  # noqa: F401  (the tiny two-exit run fixture)

pytestmark = pytest.mark.emulator


def test_bench_kernel_variants(tiny_run, tmp_path):  # noqa: F811
    from tinyexit.bench import bench_run

    run, inputs = tiny_run
    figures = {}
    for kernels in ("cortex_m4", "reference"):
        r = bench_run(run, "nrf52840", emulate=True, inputs=inputs, out=tmp_path / kernels, log=None,
                      kernels=kernels)
        assert r["kernels"] == kernels
        assert r["oracle"]["early_exit"]["identical"] == N_INPUTS and r["oracle"]["no_exit"]["identical"] == N_INPUTS
        assert r["host"] == {"inputs": N_INPUTS, "identical": N_INPUTS}
        figures[kernels] = r["instructions"]["per_inference_no_exit"]
    print(figures)
    assert figures["cortex_m4"] < 0.7 * figures["reference"], figures
