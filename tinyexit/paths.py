"""Where tinyexit keeps caches: $TINYEXIT_CACHE, else $XDG_CACHE_HOME/tinyexit, else ~/.cache/tinyexit."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("TINYEXIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tinyexit")
    return Path(base)
