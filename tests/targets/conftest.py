import shutil

import pytest


@pytest.fixture
def need_cross():
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs arm-none-eabi-gcc: apt-get install -y --no-install-recommends gcc-arm-none-eabi "
                    "libnewlib-arm-none-eabi (CI installs it)")


@pytest.fixture
def need_emulator(need_cross):
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("needs qemu-system-arm: apt-get install -y --no-install-recommends qemu-system-arm "
                    "(CI installs it)")
