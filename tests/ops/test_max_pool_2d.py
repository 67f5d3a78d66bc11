"""MAX_POOL_2D against TFLM (window clipped to the image, strides)."""
import pytest

from tests.ops._harness import build_sweep, check, op_names
from tests.ops._pool import pool_cases


CASES = pool_cases("max")


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_max_pool_matches_tflm(sweep, name):
    assert op_names(sweep, name) == ["MAX_POOL_2D"]
    check(sweep, name)
