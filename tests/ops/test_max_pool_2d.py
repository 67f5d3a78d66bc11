"""MAX_POOL_2D against TFLM (window clipped to the image, strides)."""
from tests.ops._harness import matches_tflm, sweep_fixture
from tests.ops._pool import pool_cases


CASES = pool_cases("max")


sweep = sweep_fixture(CASES)
test_max_pool_matches_tflm = matches_tflm(CASES, ["MAX_POOL_2D"])
