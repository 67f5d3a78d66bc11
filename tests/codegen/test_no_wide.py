"""The switch that leaves the wide CONV_2D path out (generate(wide=False), `tinyexit generate --no-wide`): a
wide conv stores its weights again as an int16 channel-pair stream (Conv2D.wide_stream), which the cortex_m4
image keeps instead of the int8 weights, so flash-tight boards may turn it off. Checked: the default keeps it
on, report.json says which, and on the emulated Cortex-M4 the image without it stores fewer constant bytes
(the linked image's symbols, an independent count) and still computes tflite_micro's outputs."""
import json
import re
import subprocess

import numpy as np
import pytest

from tests.conftest import require_program
from tinyexit.codegen import generate
from tinyexit.codegen.ops._common import M4
from tinyexit.conformance import emulated_outputs, tflm_outputs

RESNET = "/work/shared/conformance/pretrainedResnet_quant.tflite"


def test_default_keeps_the_wide_path_and_no_wide_leaves_it_out(tmp_path, capsys):
    from tinyexit.cli import main

    on = generate({"resnet": RESNET}, tmp_path / "on", kernels=M4, measure=False, compare_tflm=False)
    assert main(["generate", RESNET, "--out", str(tmp_path / "off"), "--name", "resnet", "--kernels", M4,
                 "--no-tflm", "--no-wide"]) == 0
    capsys.readouterr()
    off = json.loads((tmp_path / "off" / "report.json").read_text())
    assert on.wide and json.loads((tmp_path / "on" / "report.json").read_text())["wide"] is True
    assert off["wide"] is False
    assert "_wx[" in (tmp_path / "on" / "tx_model_resnet.c").read_text()          # the wide streams
    assert "_wx[" not in (tmp_path / "off" / "tx_model_resnet.c").read_text()


def _linked_constants(elf) -> int:
    """Bytes of the read-only op<step>_ symbols the linker kept (weights, tables, streams)."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], check=True, capture_output=True, text=True).stdout
    return sum(int(f[1], 16) for f in (line.split() for line in out.splitlines())
               if len(f) == 4 and f[2] in "rR" and re.match(r"op\d+_", f[3]))


@pytest.mark.emulator
def test_no_wide_image_stores_less_and_equals_tflm_on_emulated_cortex_m4(tmp_path, rng):
    require_program("arm-none-eabi-gcc", "apt-get install -y --no-install-recommends gcc-arm-none-eabi "
                                         "libnewlib-arm-none-eabi")
    require_program("qemu-system-arm", "apt-get install -y --no-install-recommends qemu-system-arm")
    x = rng.integers(-128, 128, size=(2, 32, 32, 3)).astype(np.int8)
    flash = {}
    for wide in (True, False):
        lib, work = tmp_path / f"lib{int(wide)}", tmp_path / f"fw{int(wide)}"
        generate({"resnet": RESNET}, lib, kernels=M4, measure=False, compare_tflm=False, wide=wide)
        work.mkdir()
        got, _ = emulated_outputs(lib, "resnet", x, work=work)
        np.testing.assert_array_equal(got, tflm_outputs(RESNET, x), err_msg=f"wide={wide}")
        flash[wide] = _linked_constants(next(work.rglob("*.elf")))
    assert flash[False] < flash[True], flash
