"""The generated library compiles warning-free for Cortex-M4 (arm-none-eabi-gcc -Werror)."""
import shutil
import subprocess

from tests.conftest import require_program


def test_library_compiles_for_cortex_m4(conformance_lib, tmp_path):
    require_program("arm-none-eabi-gcc", "apt-get install -y --no-install-recommends gcc-arm-none-eabi "
                                         "libnewlib-arm-none-eabi")
    lib = tmp_path / "lib"
    shutil.copytree(conformance_lib["dir"], lib)
    r = subprocess.run(["make", "-s", "-C", str(lib), "lib", "CC=arm-none-eabi-gcc",
                        "ARCH=-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (lib / "tx_model_kws.o").is_file() and (lib / "tx_conv.o").is_file()
