"""`tinyexit data kws --out DIR`: make the offline keyword data set (Speech Commands v2 layout)."""
from pathlib import Path

NAME = "data"
HELP = "make an offline data set (kws: synthesized keywords in the Speech Commands v2 layout)"


def add_arguments(p):
    p.add_argument("task", choices=["kws"], help="which data set to make")
    p.add_argument("--out", type=Path, required=True, help="folder to write (replaced atomically)")
    from tinyexit.train import DEFAULT_SPEAKERS, DEFAULT_TAKES
    p.add_argument("--speakers", type=int, default=DEFAULT_SPEAKERS,
                   help=f"number of synthetic speakers (default {DEFAULT_SPEAKERS})")
    p.add_argument("--takes", type=int, default=DEFAULT_TAKES,
                   help=f"utterances of each keyword per speaker (default {DEFAULT_TAKES})")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from tinyexit.data import load_speech_commands
    from tinyexit.data.synth_kws import make_kws_dataset
    from tinyexit.errors import TinyexitError

    if args.speakers < 3 or args.takes < 1:
        raise TinyexitError("--speakers must be at least 3 (train, validation and test each need one) "
                            "and --takes at least 1")
    out = make_kws_dataset(args.out, speakers=args.speakers, takes=args.takes, seed=args.seed)
    counts = load_speech_commands(out).counts()
    print(f"wrote {out}: " + ", ".join(f"{s} {sum(c)} clips" for s, c in counts.items()))
    return 0
