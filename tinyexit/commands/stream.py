"""`tinyexit stream RUN --wav FILE`: the streaming keyword-spotting app (tinyexit.stream_app) on a board or its
emulator, compared hop by hop with the host (the same C built with gcc, and the Python mirror)."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "stream"
HELP = "stream a WAV to the keyword-spotting firmware (or its emulator), print detections, compare with the host"


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory (a quantized, calibrated keyword-spotting run)")
    parser.add_argument("--wav", help="16-kHz mono 16-bit WAV (e.g. from `tinyexit data kws-stream`); a CSV of ground "
                                      "truth beside it (same name) is scored (optional with --calibrate-gate)")
    parser.add_argument("--board", default="nrf52840", help="board name (default nrf52840)")
    parser.add_argument("--emulate", action="store_true", help="run on the board's emulator (QEMU)")
    parser.add_argument("--runner", help="override the board's default runner (one with the `send` capability)")
    parser.add_argument("--port", help="serial port of the board")
    parser.add_argument("--hop-ms", type=float, default=250.0, help="hop in ms (default 250)")
    parser.add_argument("--smooth-hops", type=int, default=3, help="hops in the posterior average (default 3)")
    parser.add_argument("--threshold", type=float, default=0.7, help="detection threshold (default 0.7)")
    parser.add_argument("--refractory-s", type=float, default=1.0, help="seconds between detections (default 1)")
    parser.add_argument("--gate", choices=("run", "off", "energy"), default="run",
                        help="the pre-model gate that skips the model on hops without energy above the noise floor "
                             "(tinyexit.stream_gate): run = the run's calibrated one (stream_gate.json; off if none, "
                             "default), off, energy (the calibrated values unless --gate-margin/--gate-first)")
    parser.add_argument("--gate-margin", type=int, help="energy gate: int8 codes of c0 above the noise floor")
    parser.add_argument("--gate-first", type=int, help="energy gate: first frame (0..48) whose energy can open it")
    parser.add_argument("--calibrate-gate", action="store_true",
                        help="first calibrate the energy gate on VALIDATION recordings (made from the run's data "
                             "folder's validation split, or --gate-streams) and store it in the run's "
                             "stream_gate.json; then stream --wav if given")
    parser.add_argument("--gate-streams", metavar="DIR",
                        help="validation recordings for --calibrate-gate (`tinyexit data kws-stream` of the "
                             "validation split); default: made from the run's data (3 minutes, clean, 20 and 10 dB)")
    parser.add_argument("--realtime", action="store_true",
                        help="send the audio at real time (as a microphone delivers it) instead of as fast as the "
                             "firmware asks for it")
    parser.add_argument("--profile", action="store_true",
                        help="also count the front end's and the model's instructions and estimated cycles per hop "
                             "and the duty cycle at the board's clock (a runner with instruction windows: --emulate); "
                             "two more runs")
    parser.add_argument("--png", metavar="OUT", help="with --profile: the per-hop timeline as a PNG")
    parser.add_argument("--no-host", action="store_true", help="skip the comparison with the host")
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before giving up (default 1800)")


def run(args) -> int:
    from tinyexit import stream_app as sa
    from tinyexit.boards import load_board
    from tinyexit.data.level import run_level
    from tinyexit.io import write_json
    from tinyexit.run import as_run
    from tinyexit.targets import get_runner

    if not Path(args.run).is_dir():
        raise TinyexitError(f"run directory '{args.run}' does not exist; train one with `tinyexit train`")
    cfg = sa.StreamSettings(hop_ms=args.hop_ms, smooth=args.smooth_hops, threshold=args.threshold,
                            refractory_s=args.refractory_s).check()
    if args.wav is None and not args.calibrate_gate:
        raise TinyexitError("give the audio to stream with --wav FILE (or --calibrate-gate alone to calibrate the "
                            "gate)")
    pcm = sa.read_pcm(args.wav) if args.wav else None
    run_ = as_run(args.run)
    run_.policy()
    if args.calibrate_gate:
        _calibrate_gate(run_, cfg, args.gate_streams)
        if pcm is None:
            return 0
    cfg = dataclasses.replace(cfg, gate=_gate(run_, args)).check()
    print(cfg.gate.describe())
    _warn_settings(run_, cfg)
    print(f"front-end level: samples divided by {sa.stream_level(run_, cfg)}" +
          ("" if run_level(run_).streams else " (the run was trained with MLPerf's per-clip division, not with this "
           "level; train models/kws-dscnn-stream.yaml for streams)"))
    board = load_board(args.board, emulate=args.emulate or args.runner == "qemu")
    if args.png and not args.profile:
        raise TinyexitError("--png draws the --profile timeline; add --profile")
    runner = get_runner(board, args.runner, needs=("send", "instruction_windows") if args.profile else ("send",),
                        port=args.port)
    truth = Path(args.wav).with_suffix(".csv")
    with tempfile.TemporaryDirectory(prefix="tinyexit-stream-") as tmp:
        fw = sa.build_stream(run_, board, Path(tmp) / "fw", cfg)
        print(fw.sizes.table())
        print(f"streaming {len(pcm) / sa.SAMPLE_RATE:.1f} s ({sa.num_hops(len(pcm), cfg)} hops) to {fw.elf.name} "
              f"with {runner.name} ...")
        hops, res, feeder = sa.run_firmware(fw, runner, pcm, cfg, timeout=args.timeout, realtime=args.realtime)
        prof = None
        if args.profile:
            from tinyexit import stream_profile
            print("profiling the front end and the model per hop (two more runs) ...")
            prof = stream_profile.profile(fw, runner, pcm, cfg, board.clock_hz, timeout=args.timeout,
                                           hops=hops)
        host = None
        if not args.no_host:
            exe = sa.build_stream_host(run_, Path(tmp) / "host", cfg)
            host = sa.run_host(exe, pcm, cfg)
            py = sa.mirror(run_, pcm, cfg, Path(tmp) / "mirror")
            host_py = sa.equal_hops(host, py)
            if host_py != len(py) or len(host) != len(py):
                print(f"warning: the host build and the Python mirror agree on {host_py} of {len(py)} hops")
    doc = sa.summary(run_, hops, pcm, cfg, host=host, truth_csv=truth)
    doc["sizes"] = fw.sizes.as_dict()
    doc["realtime"] = args.realtime
    if args.realtime:
        doc["realtime_lag_s"] = feeder.lag_s
        print(f"real time: the firmware's requests fell behind the audio by at most {feeder.lag_s:.3f} s "
              f"({runner.name}{', emulated: not the board' + chr(39) + 's speed' if args.emulate else ''})")
    if host is not None:
        doc["hops_equal_python"] = sa.equal_hops(hops, py)
    for d in doc["detections"]:
        print(f"  {d['time_s']:8.2f} s  {d['class']:<10} exit {d['exit']:<8} {d['macs']:,} MACs")
    line = f"{doc['hops']} hops, {len(doc['detections'])} detections"
    if host is not None:
        line += f"; firmware == host on {doc['hops_equal_host']} hops, == Python on {doc['hops_equal_python']}"
    print(line)
    print(f"MACs per second of audio: {doc['macs_per_second']:,.0f} (no early exit: "
          f"{doc['macs_per_second_no_exit']:,.0f})" +
          (f"; the gate skipped the model on {doc['gate']['skipped']} of {doc['hops']} hops" if cfg.gate.on else ""))
    if doc["false_rejects"] is not None:
        print(f"false rejects {doc['false_rejects']} of {doc['score']['occurrences']}, false accepts per hour "
              f"{doc['false_accepts_per_hour']:.1f} ({truth.name})")
    if prof is not None:
        doc["profile"] = prof
        print(f"per hop at {board.clock_hz / 1e6:g} MHz (estimated cycles, no flash wait states): front end "
              f"{prof['frontend_cycles_per_hop']:,.0f} cycles ({100 * prof['frontend_share_of_model']:.1f} % of the "
              f"model's {prof['model_cycles_per_hop']:,.0f}), duty cycle {100 * prof['duty_cycle']:.2f} % "
              f"(max {100 * prof['duty_cycle_max']:.2f} %)")
        if args.png:
            print(f"figure: {stream_profile.plot(prof, hops, list(run_.manifest().get('classes') or []), args.png)}")
    if args.json:
        write_json(args.json, doc)
    return 0 if host is None or doc["hops_equal_host"] == doc["hops"] == len(host) else 1


def _gate(run_, args):
    """The gate of this stream: the run's calibrated one, off, or the energy gate with overrides."""
    from tinyexit.stream_gate import Gate, run_gate
    if args.gate == "off":
        if args.gate_margin is not None or args.gate_first is not None:
            raise TinyexitError("--gate-margin/--gate-first set an energy gate; drop them or use --gate energy")
        return Gate()
    g = run_gate(run_)
    if args.gate == "run" and args.gate_margin is None and args.gate_first is None:
        return g
    if not g.on and args.gate_margin is None:
        raise TinyexitError(f"--gate energy: {run_.path} has no calibrated gate; add --gate-margin N (and "
                            f"--gate-first F) or calibrate one with --calibrate-gate")
    base = g if g.on else Gate("energy")
    return Gate("energy", base.margin if args.gate_margin is None else args.gate_margin,
                base.first if args.gate_first is None else args.gate_first, base.rise).check()


def _calibrate_gate(run_, cfg, streams) -> None:
    from tinyexit import stream_gate as sg
    with tempfile.TemporaryDirectory(prefix="tinyexit-gate-") as tmp:
        where = streams
        if streams is None:
            streams = Path(tmp) / "validation"
            where = f"made from the validation split of {run_.model_json()['data']['dir']} (3 min, seed 0)"
            print(f"making validation recordings ({where}) ...")
            sg.validation_streams(run_, streams)
        recs = sg.read_validation(streams)
        print(f"calibrating the gate on {len(recs)} validation recordings ({', '.join(r[0] for r in recs)}), "
              f"{len(sg.candidates())} candidates ...")
        res = sg.calibrate(run_, recs, cfg, Path(tmp) / "work")
        sg.save(run_, res, str(where))
    g = sg.Gate.from_dict(res["gate"])
    print(f"{g.describe()}; wrote {run_.stream_gate_path}")
    for r, b in zip(res["chosen"]["recordings"] if res["chosen"] else [], res["reference"]):
        print(f"  {r['name']:>8}: skips {100 * r['skipped']:.0f} % of hops; false rejects {r['false_rejects']} "
              f"(no gate {b['false_rejects']}), false accepts/h {r['false_accepts_per_hour']:.0f} "
              f"(no gate {b['false_accepts_per_hour']:.0f}), MACs/s {r['macs_per_second']:,.0f} "
              f"(no gate {b['macs_per_second']:,.0f})")


def _warn_settings(run_, cfg) -> None:
    """The run's gate was calibrated with some stream settings; say so when this stream uses others."""
    from tinyexit.io import read_json
    if not cfg.gate.on or not run_.stream_gate_path.is_file():
        return
    was = read_json(run_.stream_gate_path, "re-calibrate it with --calibrate-gate").get("settings") or {}
    now = {"hop_ms": cfg.hop_ms, "smooth": cfg.smooth, "threshold": cfg.threshold, "refractory_s": cfg.refractory_s}
    diff = [f"{k} {was[k]:g} -> {v:g}" for k, v in now.items() if k in was and was[k] != v]
    if diff:
        print(f"note: the gate was calibrated with other stream settings ({', '.join(diff)}); "
              f"re-calibrate with --calibrate-gate for these")
