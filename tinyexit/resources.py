"""Where the firmware templates, the board descriptions and the model recipes are.

A checkout keeps them at the top level (`firmware_templates/`, `boards/`, `models/`: the folders users and docs
name); a wheel carries copies inside the package as `tinyexit/_data/<folder>/` (mapped in setup.py). A checkout's
folders win, so a source-tree or editable install renders exactly what you edit.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from tinyexit.errors import TinyexitError

_CHECKOUT = Path(__file__).resolve().parent.parent


def _folder(name: str) -> Path:
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / name).is_dir():
        return _CHECKOUT / name
    installed = resources.files("tinyexit") / "_data" / name
    if not isinstance(installed, Path) or not installed.is_dir():
        raise TinyexitError(f"tinyexit's {name}/ folder is missing (looked in {_CHECKOUT / name} and {installed}); "
                            "reinstall tinyexit unzipped from a wheel (pip install .) or use a checkout.")
    return installed


def templates_dir() -> Path:
    """The Jinja2 firmware templates (`firmware_templates/`)."""
    return _folder("firmware_templates")


def boards_dir() -> Path:
    """The board descriptions (`boards/*.yaml`) and their schema (`boards/board.schema.json`)."""
    return _folder("boards")


def models_dir() -> Path:
    """The model recipes (`models/*.yaml`) and their schema (`models/model.schema.json`)."""
    return _folder("models")
