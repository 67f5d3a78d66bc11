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
