#!/usr/bin/env bash
# Installs everything tinyexit needs on a fresh Debian machine: system packages (cross compiler, QEMU,
# speech synthesis) and a Python virtual environment in .venv with the pinned dependency set.
# Idempotent: a second run checks and returns in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TINYEXIT_VENV:-.venv}

need_apt=()
for pair in gcc:gcc make:make arm-none-eabi-gcc:gcc-arm-none-eabi qemu-system-arm:qemu-system-arm \
            espeak-ng:espeak-ng sox:sox flite:flite; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
[ -f /usr/lib/arm-none-eabi/newlib/libc.a ] || [ -d /usr/lib/arm-none-eabi/newlib ] || need_apt+=(libnewlib-arm-none-eabi)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need_apt[*]} libnewlib-arm-none-eabi"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      "${need_apt[@]}" libnewlib-arm-none-eabi >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || {
    echo "setup: python3 -m venv failed; install the venv module (apt-get install -y python3-venv) and re-run" >&2
    exit 1; }
fi
PY="$VENV/bin/python"
stamp="$VENV/.tinyexit-deps"
want=$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into $VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -r requirements.txt
  # These declare a dependency on the CUDA 'tensorflow' wheel; tensorflow-cpu provides the same modules.
  "$PY" -m pip install -q --no-deps -r requirements-nodeps.txt
  # setuptools' editable-install notices are noise here; on failure run it again to show the error
  "$PY" -m pip install -q --no-deps -e . >/dev/null 2>&1 || "$PY" -m pip install --no-deps -e .
  echo "$want" > "$stamp"
fi
"$PY" -m tinyexit.setup_check
# The QEMU instruction-count plugin (built with gcc into ~/.cache/tinyexit; a no-op when already built)
"$PY" -m tinyexit.targets.plugin >/dev/null
