#!/bin/sh
# The wheel as a user outside this repository gets it: built here, installed into a fresh venv with nothing but
# its dependencies (torch first: the CPU build), then used by bundled name from an empty folder.
# Usage: scripts/smoke_wheel.sh [PYTHON]   (PYTHON: one with setuptools >= 77, e.g. .venv/bin/python)
# TORCH_INDEX=https://download.pytorch.org/whl/cpu fetches the CPU torch from that index instead of pip's default.
set -eu
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${1:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

"$python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$repo"
wheel="$(ls "$work"/dist/convcost-*.whl)"
python3 -m venv "$work/venv"
pip="$work/venv/bin/python -m pip"
torch="$(grep '^torch==' "$repo/constraints.txt")"
if [ -n "${TORCH_INDEX:-}" ]; then
    $pip install -q "$torch" --index-url "$TORCH_INDEX"
else
    $pip install -q "$torch"
fi
$pip install -q "$wheel"
mkdir "$work/empty"
cd "$work/empty"
convcost="$work/venv/bin/convcost"
echo "== $(basename "$wheel") in a fresh venv; torch $("$work/venv/bin/python" -c 'import torch; print(torch.__version__)'); in an empty folder"
set -x
"$convcost" bundled
"$convcost" model mobilenet_v2
"$convcost" batch seeds
"$convcost" check budgets
{ set +x; } 2>/dev/null
test -z "$(ls -A "$work/empty")" || { echo "smoke-wheel: the commands wrote into the folder:" >&2; ls -A >&2; exit 1; }
echo "== smoke-wheel: ok"
