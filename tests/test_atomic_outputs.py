"""Output folders are written whole or not at all. A build or bench that fails (compiler or emulator missing,
image too big) leaves the earlier build or bench folder byte for byte as it was and no temporary folder
beside it; leftovers of a run killed mid-swap (`.quant.p<pid>.*.tmp`, `.quant.old<pid>`) are removed by the
next run of the stage when their process is gone, and kept while it lives; a user's folder that holds no
earlier output is never replaced."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._tiny_run import make_tiny_run
from tinyexit.errors import TinyexitError


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("atomic") / "run")


@pytest.fixture()
def run(tiny_run, tmp_path) -> Path:
    r = tmp_path / "run"
    shutil.copytree(tiny_run, r)
    return r


def _tools_without(tmp_path: Path, missing: str) -> Path:
    """A PATH folder with the cross tools and QEMU, minus `missing`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "arm-none-eabi-objcopy",
                 "qemu-system-arm", "gcc"):
        found = shutil.which(name)
        if name != missing and found:
            (bindir / name).symlink_to(found)
    return bindir


def _need(*tools):
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"needs {t} (scripts/setup.sh installs it)")


def test_a_failed_build_leaves_the_earlier_build(run, tmp_path):
    _need("arm-none-eabi-gcc")
    from tinyexit.boards import BOARDS_DIR, load_board_file
    from tinyexit.build import ImageTooBigError, build_run

    fw = build_run(run, "nrf52840", num_inputs=4)
    out = run / "firmware" / "build" / "nrf52840"
    assert fw.out == out and fw.elf == out / "firmware.elf" and fw.elf.is_file()
    before = _snapshot(out)
    assert "app/tx_app_inputs.c" in before and "size.json" in before
    # 1. the compiler is missing: refused in one line (a separate process, as a user runs it)
    env = dict(os.environ, PATH=str(_tools_without(tmp_path, "arm-none-eabi-gcc")))
    p = subprocess.run([sys.executable, "-m", "tinyexit", "build", str(run), "--board", "nrf52840", "--inputs", "2"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and "arm-none-eabi-gcc" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert _snapshot(out) == before and _hidden(out.parent) == []
    # 2. the image does not fit a board with 8 KiB of flash, built into the same folder
    text = (BOARDS_DIR / "nrf52840.yaml").read_text()
    small = (text.replace("name: nrf52840", "name: tiny")
                 .replace("flash: {origin: 0x00000000, size: 1M}", "flash: {origin: 0x00000000, size: 8K}")
                 .replace("origin: 0x000F0000, size: 64K, page_size: 4K", "origin: 0x00001000, size: 4K, page_size: 4K"))
    assert small != text.replace("name: nrf52840", "name: tiny")
    (tmp_path / "tiny.yaml").write_text(small)
    with pytest.raises(ImageTooBigError, match="does not fit tiny"):
        build_run(run, load_board_file(tmp_path / "tiny.yaml"), num_inputs=4, out=out)
    assert _snapshot(out) == before and _hidden(out.parent) == []


def test_the_debug_information_names_the_final_folder(run):
    """Built in a temporary folder, the ELF still names the sources where they end up (-ffile-prefix-map)."""
    _need("arm-none-eabi-gcc")
    from tinyexit.build import build_run
    fw = build_run(run, "nrf52840", num_inputs=2)
    elf = fw.elf.read_bytes()
    assert str(fw.out / "app").encode() in elf
    assert b".nrf52840.p" not in elf


def test_a_failed_bench_leaves_the_earlier_bench(run, tmp_path, monkeypatch):
    _need("arm-none-eabi-gcc", "qemu-system-arm")
    from tinyexit.bench import bench_run
    from tinyexit.errors import MissingToolError

    r = bench_run(run, "nrf52840", emulate=True, num_inputs=2, check_oracle=False, log=None)
    out = Path(r["files"]["json"]).parent
    before = _snapshot(out)
    assert {"bench.json", "bench.png", "early_exit/firmware.elf", "no_exit/firmware.elf"} <= before.keys()
    # the emulator is missing: both images build, then the run fails; nothing of this bench may remain
    monkeypatch.setenv("PATH", str(_tools_without(tmp_path, "qemu-system-arm")))
    with pytest.raises(MissingToolError, match="qemu-system-arm"):
        bench_run(run, "nrf52840", emulate=True, num_inputs=3, check_oracle=False, log=None)
    assert _snapshot(out) == before and _hidden(out.parent) == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


_KILLED_MID_SWAP = """
import os, sys
from tinyexit.io import atomic_dir
real, calls = os.replace, []
def dies_on_the_second_rename(a, b):   # the first moves quant/ aside, the second would move the new one in
    calls.append(a)
    if len(calls) == 2:
        os._exit(9)
    real(a, b)
os.replace = dies_on_the_second_rename
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "manifest.json").write_text("{}")
"""


def test_a_quantize_killed_mid_swap_is_cleaned_up_by_the_next(run):
    """A process killed between the two renames of atomic_dir leaves `.quant.old<pid>` and `.quant.p<pid>.*.tmp`
    (and no quant/); the next quantize removes both and writes quant/."""
    from tinyexit.quantize import quantize_run

    p = subprocess.run([sys.executable, "-c", _KILLED_MID_SWAP, str(run / "quant")], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 9, p.stderr
    left = _hidden(run)
    assert not (run / "quant").exists() and len(left) == 2, left
    import re
    old, tmp = re.fullmatch(r"\.quant\.old(\d+)", left[0]), re.fullmatch(r"\.quant\.p(\d+)\.\w+\.tmp", left[1])
    assert old and tmp and old.group(1) == tmp.group(1), left     # both of the killed process
    quantize_run(run, num_calibration=10, num_eval=10, verify_whole=False)
    assert _hidden(run) == [] and (run / "quant" / "manifest.json").is_file()


def test_stale_quantize_leftovers_are_cleaned_by_the_next_run(run):
    from tinyexit.quantize import quantize_run

    dead = _dead_pid()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        stale = [run / f".quant.p{dead}.k3j5x_q1.tmp", run / f".quant.old{dead}", run / ".quant.a1b2c3d4.tmp"]
        live = run / f".quant.p{alive.pid}.zz9yq2mm.tmp"
        for d in stale + [live]:
            d.mkdir()
            (d / "seg0.tflite").write_bytes(b"half")
        other = run / ".quantized.p1.abcdefgh.tmp"     # another artifact's name: not ours to remove
        other.mkdir()
        quantize_run(run, num_calibration=10, num_eval=10, verify_whole=False)
        assert not any(d.exists() for d in stale)
        assert live.is_dir() and other.is_dir()
        assert (run / "quant" / "manifest.json").is_file()
    finally:
        alive.kill()
        alive.wait()


def test_a_folder_without_earlier_output_is_not_replaced(tmp_path):
    from tinyexit.io import atomic_dir

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(TinyexitError, match="choose a new or empty output folder"):
        with atomic_dir(mine, holds=("size.json", "app")):
            pass
    assert (mine / "thesis.tex").read_text() == "precious"
    with pytest.raises(TinyexitError, match="choose a new or empty output folder"):   # a file is not replaced
        with atomic_dir(mine / "thesis.tex", holds=("size.json",)):
            pass
    assert (mine / "thesis.tex").read_text() == "precious"
    (mine / "size.json").write_text("{}")        # an earlier build: replaced whole
    with atomic_dir(mine, holds=("size.json", "app")) as tmp:
        (tmp / "size.json").write_text("[]")
    assert sorted(p.name for p in mine.iterdir()) == ["size.json"] and _hidden(tmp_path) == []
