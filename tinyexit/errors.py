"""One exception type for problems the user can fix; the CLI prints its message without a traceback."""


class TinyexitError(Exception):
    """A problem with the user's input or environment. The message names the problem and the fix."""


class MissingToolError(TinyexitError):
    """An external program (compiler, emulator, synthesizer) is not installed."""

    def __init__(self, tool: str, install: str):
        super().__init__(f"'{tool}' is not installed or not on PATH. Install it with: {install}  "
                         f"(or run scripts/setup.sh, which installs everything tinyexit needs)")
        self.tool = tool
        self.install = install


class UnsupportedModelError(TinyexitError):
    """A model uses an op, type or option that tinyexit cannot generate code for."""


def brief(exc: BaseException, limit: int = 160) -> str:
    """`Type: first line of the message`, printable and at most `limit` characters: an exception from a
    library (Keras, NumPy) named in a one-line message without the kilobytes some of them carry."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    text = "".join(c if c.isprintable() else "?" for c in text)
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
