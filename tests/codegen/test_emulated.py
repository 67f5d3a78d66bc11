"""The generated library on the emulated Cortex-M4 (QEMU mps2-an386) gives tflite_micro's bytes."""
import numpy as np
import pytest

from tests.conftest import require_program
from tinyexit.codegen import read_model
from tinyexit.conformance import emulated_outputs, structured_inputs, tflm_outputs


@pytest.mark.emulator
@pytest.mark.parametrize("name,n", [("kws", 12), ("resnet", 3)])
def test_emulated_board_matches_tflm(conformance_lib, rng, name, n, tmp_path):
    require_program("arm-none-eabi-gcc", "apt-get install -y --no-install-recommends gcc-arm-none-eabi "
                                         "libnewlib-arm-none-eabi")
    require_program("qemu-system-arm", "apt-get install -y --no-install-recommends qemu-system-arm")
    path = conformance_lib["paths"][name]
    g = read_model(path)
    shape = g.input.shape[1:]
    x = np.concatenate([rng.integers(-128, 128, size=(n, *shape)).astype(np.int8),
                        structured_inputs(shape, g.input.zero_point, rng)[:3]])
    got, insns = emulated_outputs(conformance_lib["dir"], name, x, work=tmp_path)
    np.testing.assert_array_equal(got, tflm_outputs(path, x))
    assert len(insns) == len(x) and min(insns) > g.macs()   # at least one instruction per MAC
