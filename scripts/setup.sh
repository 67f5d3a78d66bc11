#!/usr/bin/env bash
# Installs everything tinyexit needs on a fresh Debian machine: system packages (cross compiler, QEMU,
# speech synthesis) and a Python virtual environment in .venv with exactly the locked set (requirements.lock).
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
want=$(cat requirements.lock pyproject.toml setup.py | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the locked Python dependencies (requirements.lock) into $VENV"
  # The lock holds every package, transitive ones included, at the version the tests passed with: install
  # exactly that set, resolving nothing (requirements.txt is the lock's input; scripts/lock.sh regenerates it).
  "$PY" -m pip install -q "$(grep -i '^pip==' requirements.lock)"
  "$PY" -m pip install -q --no-deps -r requirements.lock
  # setuptools' editable-install notices are noise here; on failure run it again to show the error
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
    || "$PY" -m pip install --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
"$PY" -m tinyexit.setup_check
# The QEMU instruction-count plugin (built with gcc into ~/.cache/tinyexit; a no-op when already built)
"$PY" -m tinyexit.targets.plugin >/dev/null
