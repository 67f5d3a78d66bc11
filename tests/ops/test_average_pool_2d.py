"""AVERAGE_POOL_2D against TFLM (window clipped to the image, padding taps excluded from the count, rounding, strides)."""
from tests.ops._harness import matches_tflm, sweep_fixture
from tests.ops._pool import pool_cases


CASES = pool_cases("avg")


sweep = sweep_fixture(CASES)
test_avg_pool_matches_tflm = matches_tflm(CASES, ["AVERAGE_POOL_2D"])
