"""Hand-written stand-ins for a generated model library (tests/intermittent/standin, tests/walk_model): their
tx_model.h is rendered from the generator's own template (firmware_templates/model/tx_model.h.j2), so a stand-in
always declares exactly what docs/CONTRACTS.md ("Generated C library") promises; only the .c is hand-written. Like
a generated library, a stand-in is described by its report.json (the models in order with their sizes, the chain)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tinyexit import toolchain


def standin_library(source_dir: Path, out_dir: Path, models: dict[str, tuple[int, int]], arena_size: int,
                    chain=()) -> Path:
    """`out_dir` holding the .c files of `source_dir` and a tx_model.h for `models` (name -> (input size, output
    size), in declaration order) with a `arena_size`-byte arena, and a report.json describing them and `chain`
    (tinyexit.pipeline.Link: which models read which one's output); returns `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for c in sorted(source_dir.glob("*.c")):
        shutil.copyfile(c, out_dir / c.name)
    text = toolchain.render("model/tx_model.h.j2",
        banner=f"/* Rendered by tests/standin_library.py for the stand-in {source_dir.name}/. Do not edit. */",
        models=[{"cname": name} for name in models], arena_size=arena_size,
        max_input=max(i for i, _ in models.values()), max_output=max(o for _, o in models.values()))
    header = out_dir / "tx_model.h"
    if not header.is_file() or header.read_text() != text:     # build caches hash the headers
        header.write_text(text)
    doc = {"models": {n: {"name": n, "input_size": i, "output_size": o} for n, (i, o) in models.items()},
           "chain": [{"producer": l.producer, "readers": list(l.readers), "consumer": l.consumer} for l in chain]}
    (out_dir / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    return out_dir
