"""`tinyexit data kws --out DIR`: make the offline keyword data set (Speech Commands v2 layout).
`tinyexit data kws-stream --out DIR`: long recordings of held-out voices over noise, with ground-truth CSVs."""
from pathlib import Path

NAME = "data"
HELP = ("make an offline data set (kws: synthesized keywords in the Speech Commands v2 layout; kws-stream: long "
        "recordings of held-out voices at several SNRs with ground-truth CSVs)")


def add_arguments(p):
    p.add_argument("task", choices=["kws", "kws-stream"], help="which data set to make")
    p.add_argument("--out", type=Path, required=True, help="folder to write (replaced atomically)")
    from tinyexit.train import DEFAULT_SPEAKERS, DEFAULT_TAKES
    p.add_argument("--speakers", type=int, default=DEFAULT_SPEAKERS,
                   help=f"kws: number of synthetic speakers (default {DEFAULT_SPEAKERS})")
    p.add_argument("--takes", type=int, default=DEFAULT_TAKES,
                   help=f"kws: utterances of each keyword per speaker (default {DEFAULT_TAKES})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=None,
                   help="kws-stream: Speech Commands v2 folder whose test-list voices speak (default: the offline "
                        "set `tinyexit train kws` uses, made if missing)")
    p.add_argument("--minutes", default="3", help="kws-stream: length of each recording in minutes (default 3)")
    p.add_argument("--snr", default="20,10,5,0",
                   help="kws-stream: SNRs in dB, one noisy recording each besides the clean one (default 20,10,5,0)")


def run(args) -> int:
    from tinyexit.errors import TinyexitError

    if args.task == "kws-stream":
        return _stream(args)
    from tinyexit.data import load_speech_commands
    from tinyexit.data.synth_kws import make_kws_dataset

    if args.speakers < 3 or args.takes < 1:
        raise TinyexitError("--speakers must be at least 3 (train, validation and test each need one) "
                            "and --takes at least 1")
    out = make_kws_dataset(args.out, speakers=args.speakers, takes=args.takes, seed=args.seed)
    counts = load_speech_commands(out).counts()
    print(f"wrote {out}: " + ", ".join(f"{s} {sum(c)} clips" for s, c in counts.items()))
    return 0


def _stream(args) -> int:
    import math

    from tinyexit.data.streams import make_streams, parse_snrs
    from tinyexit.errors import TinyexitError

    try:
        minutes = float(args.minutes)
    except ValueError:
        minutes = math.nan
    if not (math.isfinite(minutes) and minutes > 0):
        raise TinyexitError(f"--minutes {args.minutes!r}: give a positive number of minutes, e.g. --minutes 3")
    snrs = parse_snrs(args.snr)
    data = args.data
    if data is None:
        from tinyexit.train import default_dataset
        data = default_dataset()
    m = make_streams(args.out, data, minutes=minutes, snrs=snrs, seed=args.seed)
    names = ", ".join(r["name"] for r in m["recordings"])
    print(f"wrote {args.out}: {names} ({minutes:g} min each, {m['words']} words of which {m['keywords']} keywords, "
          f"{len(m['speakers'])} held-out speakers); {m['note']}")
    return 0
