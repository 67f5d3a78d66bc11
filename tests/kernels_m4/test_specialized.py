"""Each conformance model alone in its library: the cortex_m4 kernels emit only the paths that model takes
(tinyexit.codegen.features), so this is a different build from the all-paths library of test_kernels_m4.
Byte-exact with tflite_micro on the emulated Cortex-M4, and the targets of ../shared/ANCHORS.md: KWS code
(library .text, weights excluded) <= 8 KB and <= 4.6 M instructions, ResNet-8 <= 17.9 M."""
import numpy as np
import pytest

from tests.conftest import conformance_model, require_program

pytestmark = pytest.mark.emulator
MODELS = {"kws": ("kws_ref_model.tflite", 4_600_000, 8 * 1024), "resnet": ("pretrainedResnet_quant.tflite",
                                                                          17_900_000, None)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_alone_matches_tflm_within_targets(name, tmp_path):
    require_program("arm-none-eabi-gcc", "apt-get install -y --no-install-recommends gcc-arm-none-eabi "
                                         "libnewlib-arm-none-eabi")
    require_program("qemu-system-arm", "apt-get install -y --no-install-recommends qemu-system-arm")
    from tinyexit.codegen import generate, read_model
    from tinyexit.conformance import emulated_outputs, structured_inputs, tflm_outputs

    file, max_insns, max_code = MODELS[name]
    path = conformance_model(file)
    report = generate({name: path}, tmp_path / "lib", kernels="cortex_m4", compare_tflm=False)
    g = read_model(path)
    rng = np.random.default_rng(11)
    shape = g.input.shape[1:]
    x = np.concatenate([rng.integers(-128, 128, size=(4, *shape)),
                        structured_inputs(shape, g.input.zero_point, rng)[[0, 1, 6, 9]]]).astype(np.int8)
    got, insns = emulated_outputs(tmp_path / "lib", name, x, work=tmp_path)
    np.testing.assert_array_equal(got, tflm_outputs(path, x))
    assert max(insns) <= max_insns, insns
    if max_code is not None and report.compiler.startswith("arm-none-eabi-gcc"):
        assert report.models[name].code_bytes <= max_code, report.models[name].code_bytes
