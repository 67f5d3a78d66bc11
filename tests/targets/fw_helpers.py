"""Helpers for the target tests: the firmware app over the toy model library, built for a board and host; a
reader of the emulators' UART socket that is late."""
import time
from pathlib import Path

import numpy as np

from tinyexit.build import APP_SOURCES, build_firmware, build_host, render_app
from tinyexit.pipeline import EXIT, SEGMENT, ExitRule, Pipeline, Policy, Stage

from tests.standin_library import standin_library

TOY = Path(__file__).parents[1] / "walk_model"        # the runtime walk's stand-in library (walk_model.c)
TOY_MODELS = {"seg0": (16, 8), "conf1": (8, 2), "exit1": (8, 4), "seg1": (8, 4)}   # name -> (input, output size)


TOY_PIPELINE = Pipeline((Stage("seg0", SEGMENT, 0, 0, 16, 8), Stage("exit1", EXIT, 0, 0, 8, 4),
                         Stage("seg1", SEGMENT, 1, 0, 8, 4)),
                        input_size=16, exit_names=("exit1", "final"), policy=Policy(exits=(ExitRule("exit1", 60),)))


def toy_inputs(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, (n, 16)).astype(np.int8), rng.integers(0, 4, n)


def toy_app(tmp_path: Path, n=16, seed=0, pipeline=TOY_PIPELINE):
    """Render the firmware app for the toy library; returns (sources, include dirs, inputs)."""
    x, y = toy_inputs(n, seed)
    app = tmp_path / "app"
    render_app(pipeline, x, y, app)
    lib = standin_library(TOY, tmp_path / "toy_model", TOY_MODELS, arena_size=64)
    return [app / s for s in APP_SOURCES] + [lib / "walk_model.c"], [app, lib], (x, y)


def firmware(tmp_path, board, sources, name="fw", **kw):
    return build_firmware(board, sources, tmp_path / name, emulate=True, **kw)


def host(tmp_path, sources, include_dirs, **kw):
    return build_host(sources, tmp_path / "host", include_dirs=include_dirs, **kw)


def late_reader(monkeypatch, seconds: float) -> None:
    """The runners pause `seconds` after connecting to the emulator's UART socket, before their first read (a
    reader the scheduler paused on a loaded machine): what the emulator sends meanwhile must not be lost."""
    from tinyexit.targets import uart_socket
    connect = uart_socket.connect

    def late(*args, **kwargs):
        sock = connect(*args, **kwargs)
        time.sleep(seconds)
        return sock

    monkeypatch.setattr(uart_socket, "connect", late)
