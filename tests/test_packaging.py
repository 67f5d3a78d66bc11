"""A wheel install (`pip install .`) carries the firmware templates, the boards and the model recipes and works without
the checkout.

The wheel is built from a copy of the packaged sources (so no build/ folder lands in the checkout), installed with
`pip install --target`, and used from a fresh interpreter whose cwd is outside the repo and whose path holds only
that target and the venv's site-packages (`-S`: the venv's editable-install hook does not run), so nothing can
come from the source tree.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import REPO, conformance_model

# What the wheel is built from; __pycache__ and build leftovers stay behind.
PACKAGED = ("pyproject.toml", "setup.py", "tinyexit", "firmware_templates", "boards", "models")
DATA_FOLDERS = ("firmware_templates", "boards", "models")
# pyproject.toml's build requirement: build offline with the venv's setuptools when it is new enough, else let
# pip fetch it (PyPI or pip's cache) into an isolated build environment, as `pip install .` does.
SETUPTOOLS_MIN = (77,)

CHECK = """
import json, sys
from pathlib import Path
import tinyexit, tinyexit.resources, tinyexit.boards, tinyexit.toolchain
import tinyexit.intermittent.host, tinyexit.targets.plugin
from tinyexit.codegen import generate

model, out = sys.argv[1], Path(sys.argv[2])
generate(model, out, compare_tflm=False, measure=False)
boards = {n: tinyexit.boards.load_board(n).name for n in tinyexit.boards.available_boards()}
import tinyexit.models.recipe as recipe
recipes = {n: str(recipe.load_recipe(n).path) for n in recipe.available_recipes()}
print(json.dumps({
    "package": tinyexit.__file__,
    "templates": str(tinyexit.resources.templates_dir()),
    "boards_dir": str(tinyexit.resources.boards_dir()),
    "lookups": [str(p) for p in (tinyexit.toolchain.TEMPLATES, tinyexit.boards.BOARDS_DIR, tinyexit.boards.SCHEMA_PATH,
                                 tinyexit.intermittent.host.RUNTIME_DIR, tinyexit.targets.plugin.SOURCE,
                                 tinyexit.resources.models_dir())],
    "boards": boards,
    "recipes": recipes,
    "generated": sorted(p.name for p in out.iterdir()),
}))
"""


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _pip(*args: str, cwd: Path, hint: str = "") -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], cwd=cwd,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"pip {' '.join(args)} failed{hint}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def _setuptools_new_enough() -> bool:
    try:
        version = tuple(int(x) for x in metadata.version("setuptools").split(".")[:1])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return version >= SETUPTOOLS_MIN


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the copy of the packaged sources the wheel was built from, the bare folder the wheel was installed in)."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    src.mkdir()
    for name in PACKAGED:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    isolation = ["--no-build-isolation"] if _setuptools_new_enough() else []
    _pip("wheel", "--no-deps", *isolation, "-w", str(root / "dist"), ".", cwd=src,
         hint="" if isolation else " (offline? pip install 'setuptools>=77' into the venv to build without PyPI)")
    (wheel,) = (root / "dist").glob("tinyexit-*.whl")
    target = root / "target"
    _pip("install", "--no-deps", "--target", str(target), str(wheel), cwd=root)
    return src, target


def test_wheel_ships_every_data_file(installed):
    src, target = installed
    package = target / "tinyexit"
    assert _files(package) >= _files(src / "tinyexit"), "a file of tinyexit/ is missing from the wheel"
    for folder in DATA_FOLDERS:
        assert _files(package / "_data" / folder) == _files(src / folder), f"{folder}/ differs in the wheel"


def test_wheel_install_generates_c_and_loads_boards(installed, tmp_path):
    model = conformance_model("kws_ref_model.tflite")
    site = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    src, target = installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *sorted(site)]), "PYTHONNOUSERSITE": "1"}
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    r = subprocess.run([sys.executable, "-S", "-c", CHECK, str(model), str(tmp_path / "lib")], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])

    package = target / "tinyexit"
    assert Path(got["package"]).parent == package
    assert Path(got["templates"]) == package / "_data" / "firmware_templates"
    assert Path(got["boards_dir"]) == package / "_data" / "boards"
    for path in got["lookups"]:
        assert Path(path).is_relative_to(package) and Path(path).exists(), path
    assert set(got["boards"]) == {p.stem for p in (src / "boards").glob("*.yaml")}
    assert set(got["recipes"]) == {p.stem for p in (src / "models").glob("*.yaml")}
    assert all(Path(p).parent == package / "_data" / "models" for p in got["recipes"].values())
    assert "report.json" in got["generated"] and any(n.endswith(".c") for n in got["generated"])
