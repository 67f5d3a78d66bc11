"""TX_CKPT_SLOTS 0 over an NVM that holds three of the largest records: the NVM is a log of page-aligned records
(each commit right after the newest record, wrapping to page 0), which records of several pages (MLPerf Tiny's
KWS model, 4 KiB pages) must survive under power cuts, also cuts inside the commits that wrap."""
from __future__ import annotations

import pytest

from tinyexit.intermittent import prepare_library, run_campaign, slots
from tinyexit.intermittent.host import Granularity, HostTarget, build_host

from ..conftest import conformance_model
from ._support import random_inputs


@pytest.fixture(scope="module")
def kws_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("kws_log")
    lib, pipe = prepare_library(conformance_model("kws_ref_model.tflite"), out)
    return build_host(lib, pipe, out / "host", slots="fit")


def test_log_layout_and_wrap(kws_log, tmp_path):
    t = HostTarget(kws_log, tmp_path / "nvm.bin")
    pages = t.info["nvm_bytes"] // 4096
    largest = -(-(64 + t.info["max_payload"]) // 4096)
    assert t.info["log"] == 1 and t.slot_size == 4096 and t.num_slots == pages >= 3 * largest
    t.erase_nvm()
    (tmp_path / "in.bin").write_bytes(random_inputs(1, 490, seed=3)[0])
    starts, seqs = set(), []
    for k in range(6):   # consecutive inferences go round the log
        b = t.boot(tmp_path / "in.bin", 100 + k, Granularity.parse("units:25"))
        rec = t.newest()
        assert b.returncode == 0 and rec is not None and rec.done and rec.input_id == 100 + k
        assert b.output == rec.payload and b.commits > 1
        starts.add(rec.slot)
        seqs.append(rec.seq)
    assert len(starts) > 1 and seqs == sorted(seqs)
    # every valid record lies inside the NVM, records do not overlap, and the newest is the highest sequence
    image = t.nvm_image()
    recs = slots.log_records(image, t.info["fingerprint"])
    spans = sorted((r.offset, r.offset + (slots.pack_bytes(len(r.payload)) if r.packed else 64 + len(r.payload)))
                   for r in recs)
    assert all(a_end <= b for (_, a_end), (b, _) in zip(spans, spans[1:])) and spans[-1][1] <= pages * 4096
    # checkpoints start a page; results are packed records inside one page; each boot's first commit starts a page
    assert all(r.offset % 4096 == 0 for r in recs if not r.packed)
    assert all(r.packed == r.done and r.offset // 4096 == (r.offset + slots.pack_bytes(len(r.payload)) - 1) // 4096
               for r in recs if r.packed)
    assert max(recs, key=lambda r: r.seq) == t.newest()


@pytest.mark.parametrize("gran", ["layer", "units:25"])
def test_log_campaign_zero_wrong_results(kws_log, tmp_path, gran):
    t = HostTarget(kws_log, tmp_path / "nvm.bin")
    report = run_campaign(t, random_inputs(3, 490, seed=4), cuts=200, seed=6, granularity=Granularity.parse(gran))
    assert report.cuts >= 200 and report.cuts_in_commits >= 60
    assert report.ok, report.table()
