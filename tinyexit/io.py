"""Atomic file output: a reader never sees a half-written artifact, and a failure leaves nothing behind.
Also the one JSON reader of run-folder files: a missing or garbled file is a one-line TinyexitError."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(path: str | os.PathLike, fix: str, kind: type = dict) -> Any:
    """The JSON document in `path` (of type `kind`); a missing, unreadable or garbled file, or one holding
    another type, raises TinyexitError "PATH ...; FIX" (`fix` says how to regenerate it)."""
    from tinyexit.errors import TinyexitError

    path = Path(path)
    if not path.is_file():
        raise TinyexitError(f"{path} does not exist; {fix}")
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TinyexitError(f"{path} is not valid JSON ({str(e)[:100]}); {fix}") from None
    if not isinstance(doc, kind):
        raise TinyexitError(f"{path} holds a JSON {type(doc).__name__}, not a JSON "
                            f"{'object' if kind is dict else kind.__name__}; {fix}")
    return doc


def _make_parent(path: Path) -> None:
    from tinyexit.errors import TinyexitError
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:   # a file where a folder should be, no permission, read-only file system
        raise TinyexitError(f"cannot create the folder {path.parent} ({e.strerror or e}); choose another "
                            f"output path") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:
        return False
    except PermissionError:    # alive, owned by another user
        return True
    return True


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove what earlier atomic writes of `path` left beside it when their process died mid-write (killed,
    crashed): `.NAME.p<pid>.*.tmp` (temp file or folder), `.NAME.old<pid>` (the previous folder during the
    swap) and `.STEM.tmp<pid>SUFFIX` (atomic_path) whose process is gone, and pid-less `.NAME.XXXXXXXX.tmp`
    of older versions. atomic_dir and atomic_path call it, so the next run of a stage cleans up (write_bytes
    does not: it writes thousands of files in some folders). Returns what it removed."""
    import re

    path = Path(path)
    name, stem, suffix = re.escape(path.name), re.escape(path.stem), re.escape(path.suffix)
    pattern = re.compile(rf"\.{name}\.p(\d+)\.\w+\.tmp|\.{name}\.old(\d+)|\.{stem}\.tmp(\d+){suffix}"
                         rf"|\.{name}\.[a-z0-9_]{{8}}\.tmp")
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = pattern.fullmatch(p.name)
        if not m:
            continue
        pid = next((int(g) for g in m.groups() if g), None)
        if pid is not None and (pid == os.getpid() or _pid_alive(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        removed.append(p)
    return removed


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    _make_parent(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())          # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path` for a library that writes files itself (Keras, matplotlib);
    on success it is renamed over `path`, on failure removed. Keeps the real suffix so writers that
    dispatch on it (model.save, savefig) behave."""
    path = Path(path)
    _make_parent(path)
    clean_stale(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Lay out a matplotlib figure, write it to `path` atomically and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, holds: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success it replaces `path` whole, on failure it is removed
    (`path` keeps what it held). Leftovers of an earlier run that was killed mid-write are removed first.
    `holds`: names of which an earlier output in `path` has at least one; a non-empty `path` with none of them
    is not replaced (a user's folder given as --out) but refused with a TinyexitError."""
    path = Path(path)
    if holds and (path.is_dir() and any(path.iterdir()) and not any((path / n).exists() for n in holds)
                  or path.exists() and not path.is_dir()):
        from tinyexit.errors import TinyexitError
        raise TinyexitError(f"{path} is not empty and holds no earlier output of this command ({', '.join(holds)}); "
                            f"it would be replaced whole: choose a new or empty output folder")
    _make_parent(path)
    clean_stale(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
