"""Parse what the firmware application prints (firmware_templates/app/tx_app.c):

    TX BEGIN board=nrf52840 inputs=3 stages=seg0,exit1,seg1 exits=exit1,final unit=ticks no_exit=0
    TX R i=0 exit=0 class=2 label=2 conf=68 ticks=41,13,- out=bd39440f
    TX END n=3 correct=2 exits=2,1 ticks=664 stack=312
"""
from __future__ import annotations

import dataclasses

from tinyexit.errors import TinyexitError


@dataclasses.dataclass(frozen=True)
class InputResult:
    index: int
    exit: int
    predicted: int
    label: int
    confidence: int
    ticks: tuple[int | None, ...]   # per stage, None when the stage did not run
    output: bytes                   # the int8 output bytes of the exit taken

    @property
    def output_int8(self) -> list[int]:
        return [b - 256 if b > 127 else b for b in self.output]


@dataclasses.dataclass(frozen=True)
class AppOutput:
    board: str
    stages: tuple[str, ...]
    exits: tuple[str, ...]
    unit: str
    no_exit: bool
    results: tuple[InputResult, ...]
    summary: dict

    def decisions(self) -> list[tuple[int, int, bytes]]:
        """(exit, class, output bytes) per input: what must agree between host, emulator and board."""
        return [(r.exit, r.predicted, r.output) for r in self.results]


def _fields(line: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in line.split()[2:] if "=" in tok)


def parse_app_output(text: str) -> AppOutput:
    begin = None
    results = []
    summary = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("TX BEGIN"):
            begin = _fields(line)
        elif line.startswith("TX R "):
            f = _fields(line)
            results.append(InputResult(
                index=int(f["i"]), exit=int(f["exit"]), predicted=int(f["class"]), label=int(f["label"]),
                confidence=int(f["conf"]),
                ticks=tuple(None if t == "-" else int(t) for t in f["ticks"].split(",")),
                output=bytes.fromhex(f["out"])))
        elif line.startswith("TX END"):
            f = _fields(line)
            summary = {"n": int(f["n"]), "correct": int(f["correct"]),
                       "exits": [int(v) for v in f["exits"].split(",")], "ticks": int(f["ticks"]),
                       "stack": int(f.get("stack", 0))}
    if begin is None or summary is None:
        raise TinyexitError("the firmware's output has no complete TX BEGIN ... TX END block; it stopped "
                            "early or is not a tinyexit firmware. Output was:\n" + text[-2000:])
    if len(results) != summary["n"]:
        raise TinyexitError(f"the firmware reported {summary['n']} inputs but printed {len(results)} result "
                            f"lines; the serial output lost data.")
    return AppOutput(board=begin["board"], stages=tuple(begin["stages"].split(",")),
                     exits=tuple(begin["exits"].split(",")), unit=begin["unit"], no_exit=begin["no_exit"] == "1",
                     results=tuple(results), summary=summary)
