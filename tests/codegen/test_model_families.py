"""The project's own model families (DS-CNN, ResNet-8, MobileNetV1-0.25 with their exit heads; random
weights), converted whole per exit output, generated into one library: bytes equal tflite_micro's."""
import numpy as np
import pytest

from tests.conftest import require_program
from tests.ops._harness import Case, convert
from tinyexit.codegen import generate, read_model
from tinyexit.conformance import build_host, run_host, structured_inputs, tflm_outputs


@pytest.fixture(scope="module")
def family_lib(tmp_path_factory):
    require_program("gcc", "apt-get install -y gcc make")
    import keras

    from tinyexit.models.dscnn import build_dscnn
    from tinyexit.models.mobilenet import build_mobilenet_v1
    from tinyexit.models.resnet8 import build_resnet8

    work = tmp_path_factory.mktemp("families")
    paths = {}
    for family, build in (("dscnn", build_dscnn), ("resnet8", build_resnet8), ("mobilenet", build_mobilenet_v1)):
        model = build()
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        for k, out in enumerate(model.outputs):
            sub = keras.Model(model.inputs, out)
            p = work / f"{family}_{k}.tflite"
            p.write_bytes(convert(Case(p.stem, lambda _keras, sub=sub: sub, shape)))
            paths[p.stem] = p
    report = generate(paths, work / "lib", measure=False, compare_tflm=False)
    return {"paths": paths, "exe": build_host(work / "lib"), "report": report}


def test_every_exit_of_every_family_matches_tflm(family_lib):
    rng = np.random.default_rng(9)
    assert len(family_lib["paths"]) >= 6
    for name, path in family_lib["paths"].items():
        g = read_model(path)
        shape = g.input.shape[1:]
        x = np.concatenate([rng.integers(-128, 128, size=(6, *shape)).astype(np.int8),
                            structured_inputs(shape, g.input.zero_point, rng)[:4]])
        np.testing.assert_array_equal(run_host(family_lib["exe"], name, x, g.output.nbytes), tflm_outputs(path, x),
                                      err_msg=name)
