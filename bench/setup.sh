#!/usr/bin/env bash
# Prepares what bench/run.py needs; everything lands under target/ and is reused on the next call.
#   1. target/bench-venv: onnxruntime 1.32.0, numpy, onnx (the onnxruntime side of the comparison).
#   2. The benchmark models (bench/make_models.py from ../shared), only when they are missing:
#      exporting needs torch, torchvision and transformers (a ~6 GB install). Point BENCH_TORCH_PY at
#      a Python that has them to reuse it; otherwise they are installed into target/bench-venv.
#   3. The tract runner (bench/tract-runner, outside the workspace), built niced into
#      target/tract-runner: 15-40 minutes on a 2-core machine the first time.
#
# Environment: PYTHON (interpreter for the venv, default python3), BENCH_VENV (default
# target/bench-venv), BENCH_MODELS (default target/bench-models), BENCH_TORCH_PY (see 2),
# BENCH_SKIP_TRACT=1 / BENCH_SKIP_MODELS=1 to leave those steps out.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$ROOT/target/bench-venv}"
MODELS="${BENCH_MODELS:-$ROOT/target/bench-models}"
PYTHON="${PYTHON:-python3}"
MAKE_MODELS="$ROOT/../shared/bench/make_models.py"
REQS="onnxruntime==1.32.0 numpy onnx"

say() { echo "bench/setup: $*" >&2; }
die() { say "error: $*"; exit 1; }

# 1. The onnxruntime venv (the stamp records what was installed, so a changed list reinstalls).
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.bench-reqs" 2>/dev/null)" != "$REQS" ]; then
    say "creating $VENV ($REQS)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --quiet $REQS
    echo "$REQS" > "$VENV/.bench-reqs"
fi
"$VENV/bin/python" -c 'import onnxruntime, numpy, onnx' || die "$VENV cannot import onnxruntime/numpy/onnx"

# 2. The models.
if [ "${BENCH_SKIP_MODELS:-0}" != 1 ]; then
    missing=()
    for m in resnet50 mobilenet_v2 bert_base; do
        [ -f "$MODELS/$m.onnx" ] && [ -f "$MODELS/$m.inputs.npz" ] || missing+=("$m")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ -f "$MAKE_MODELS" ] || die "missing $MAKE_MODELS (the shared material beside the checkout)"
        TORCH_PY="${BENCH_TORCH_PY:-}"
        if [ -z "$TORCH_PY" ]; then
            TORCH_PY="$VENV/bin/python"
            if ! "$TORCH_PY" -c 'import torch, torchvision, transformers' 2>/dev/null; then
                say "installing torch, torchvision, transformers into $VENV to export the models (large)"
                "$VENV/bin/pip" install --quiet torch torchvision transformers
            fi
        fi
        say "exporting ${missing[*]} into $MODELS with $TORCH_PY"
        mkdir -p "$MODELS"
        nice -n 10 "$TORCH_PY" "$MAKE_MODELS" --out "$MODELS" "${missing[@]}"
    fi
fi

# 3. The tract runner.
if [ "${BENCH_SKIP_TRACT:-0}" != 1 ]; then
    say "building the tract runner into target/tract-runner (niced; long the first time)"
    nice -n 19 cargo build --release --quiet --manifest-path "$ROOT/bench/tract-runner/Cargo.toml" \
        --target-dir "$ROOT/target/tract-runner"
fi

# ferry itself.
say "building ferry (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p ferry-cli
say "ready: $VENV/bin/python bench/run.py --models $MODELS"
