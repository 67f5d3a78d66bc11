"""Packaging beyond what pyproject.toml can say: the wheel carries the top-level firmware_templates/, boards/ and
models/ (the folders users and docs name) inside the package as tinyexit/_data/<folder>/; tinyexit/resources.py
finds either. Everything else is in pyproject.toml."""
from setuptools import find_packages, setup

DATA = {"tinyexit._data.firmware_templates": "firmware_templates", "tinyexit._data.boards": "boards",
        "tinyexit._data.models": "models"}

setup(
    packages=find_packages(include=["tinyexit*"]) + list(DATA),
    package_dir=DATA,
    # every file the data folders hold, subfolders included; listed here, not taken from a manifest
    package_data={**{pkg: ["**/*"] for pkg in DATA}, "tinyexit.targets": ["*.c"]},
    include_package_data=False,
)
