#!/usr/bin/env bash
# Makes sure the pinned Python tools (scripts/requirements.txt) are installed in keyrot's venv and
# prints the venv's path. Reinstalls when the requirements change; fails loudly if pip cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${KEYROT_VENV:-$HOME/.cache/keyrot/venv}"
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && cmp -s scripts/requirements.txt "$stamp"; then
  echo "$venv"
  exit 0
fi

python="$(command -v python3 || true)"
if [ -z "$python" ]; then
  echo "keyrot's tests need Python 3.9 or later (python3) to run moto and cfn-lint" >&2
  exit 1
fi
echo "installing scripts/requirements.txt into $venv" >&2
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt >&2 || {
  echo "pip could not install scripts/requirements.txt into $venv; check that PyPI is reachable" >&2
  exit 1
}
cp scripts/requirements.txt "$stamp"
echo "$venv"
