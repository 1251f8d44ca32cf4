#!/usr/bin/env bash
# Create/refresh the Python venv used by the test suite (target/venv).
#
# Idempotent: the venv is created if missing (or broken), and
# scripts/requirements-test.txt is installed only when its sha256 differs from
# the one recorded in the stamp file target/venv/.requirements.sha256.
# Quiet on success; on failure prints pip's output and exits non-zero.
#
# Environment: PYTHON (interpreter used to create the venv, default python3),
#              VENV (venv directory, default <repo>/target/venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="$ROOT/scripts/requirements-test.txt"
VENV="${VENV:-$ROOT/target/venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.requirements.sha256"

die() { echo "setup-venv: error: $*" >&2; exit 1; }

[ -f "$REQ" ] || die "missing $REQ"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"

# A venv whose interpreter no longer runs (e.g. the base python was removed) is rebuilt.
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "setup-venv: $VENV is broken; recreating it" >&2
    rm -rf "$VENV"
fi

if [ ! -x "$VENV/bin/python" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (set PYTHON=/path/to/python3)"
    mkdir -p "$(dirname "$VENV")"
    if ! out="$("$PYTHON" -m venv "$VENV" 2>&1)"; then
        echo "$out" >&2
        rm -rf "$VENV"
        die "'$PYTHON -m venv $VENV' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi

rm -f "$STAMP"
if ! out="$("$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQ" 2>&1)"; then
    echo "$out" >&2
    die "pip install -r $REQ failed"
fi
# Make sure the pinned tools actually import before declaring success.
if ! out="$("$VENV/bin/python" -c 'import onnx, onnx.reference, onnxruntime, numpy' 2>&1)"; then
    echo "$out" >&2
    die "the venv's packages do not import"
fi
echo "$want" >"$STAMP"
echo "setup-venv: installed $(basename "$REQ") into $VENV"
