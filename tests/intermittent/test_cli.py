"""`tinyexit powerfail` on the host."""
from __future__ import annotations

import json

from tinyexit.cli import main


def test_powerfail_cli_passes_and_writes_json(standin, tmp_path, capsys):
    rc = main(["powerfail", str(standin), "--cuts", "30", "--seed", "1", "--granularity", "layer,units:4",
               "--out", str(tmp_path / "out"), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "wrong results 0" in out and "every committed result equals" in out
    reports = json.loads((tmp_path / "r.json").read_text())
    assert [r["granularity"] for r in reports] == ["layers:1", "units:4"]
    assert all(r["ok"] and r["cuts"] >= 30 for r in reports)


def test_powerfail_cli_fails_on_broken_runtime(standin, tmp_path, capsys):
    rc = main(["powerfail", str(standin), "--cuts", "200", "--seed", "7", "--granularity", "units:1",
               "--broken", "no-crc", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL inference" in out and "TX_CUT_EVENTS=" in out   # the failing cuts, for a replay


def test_powerfail_cli_rejects_bad_granularity(standin, tmp_path, capsys):
    rc = main(["powerfail", str(standin), "--granularity", "rows", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "granularity 'rows' not understood" in capsys.readouterr().err


def test_powerfail_cli_rejects_bad_wear_options(standin, tmp_path, capsys):
    for args, msg in ((["--slots", "fit"], "--slots fit fills the emulated board's NVM region; add --emulate"),
                      (["--slots", "1"], "--slots 1: at least 2"),
                      (["--nvm-region", "256K"], "--nvm-region is for the emulated board; add --emulate"),
                      (["--emulate", "--nvm-region", "lots"], "--nvm-region 'lots': bytes"),
                      (["--emulate", "--rate", "0"], "--rate 0: give inferences per second"),
                      (["--defer-results", "--granularity", "jit"], "--defer-results is for emulated exit-head"),
                      (["--emulate", "--defer-results"], "--defer-results needs just-in-time checkpoints")):
        rc = main(["powerfail", str(standin), *args, "--out", str(tmp_path / "o")])
        assert rc == 2 and msg in capsys.readouterr().err, args
