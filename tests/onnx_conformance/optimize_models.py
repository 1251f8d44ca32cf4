#!/usr/bin/env python3
"""`ferry optimize` on real models, checked with onnxruntime.

For every NAME.onnx in DIR that has NAME.inputs.npz and NAME.ort.npz beside it (onnxruntime's
outputs on the original model, recorded by whoever made the models), and likewise for the
NAME.dyn.* pair (other input sizes, for models with dynamic axes):

  1. `ferry optimize NAME.onnx -o opt.onnx --json`  (nodes before/after, optimize time)
  2. onnxruntime runs opt.onnx on the recorded inputs; each output must match the recorded one
     (rtol 1e-3, atol 1e-4: folding BatchNorm or constants reorders float arithmetic).
  3. Where it does not, the same check runs on `ferry convert` at the same opset: a model whose
     plain conversion differs in the same outputs is reported as `convert-differs` (a conversion
     matter, not an optimization one) and not counted as an optimize failure.

Needs a Python with numpy and onnxruntime (e.g. /work/cache/torch-venv/bin/python).
Usage: optimize_models.py DIR [--ferry target/release/ferry] [--filter REGEX]
The last line is 'N passed, N failed'. Exit 1 when any model fails (convert-differs excepted).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def compare(got, want, rtol: float, atol: float) -> str | None:
    import numpy as np

    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != {want.dtype}"
    if want.dtype.kind in "iub":
        return None if np.array_equal(got, want) else "values differ"
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        return f"{int(bad.sum())} elements differ, max abs error {float(np.abs(got - want).max()):.3g}"
    return None


def check_outputs(path: str, out: str, rtol: float, atol: float) -> list[str]:
    """Problems of onnxruntime's outputs on `out` against those recorded for `path`."""
    import numpy as np
    import onnxruntime as ort

    base = path[: -len(".onnx")]
    problems = []
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for tag in ("", ".dyn"):
        inputs, expected = f"{base}{tag}.inputs.npz", f"{base}{tag}.ort.npz"
        if not (os.path.exists(inputs) and os.path.exists(expected)):
            continue
        feeds = dict(np.load(inputs))
        want = dict(np.load(expected))
        got = dict(zip(names, sess.run(None, feeds)))
        for k, w in want.items():
            if k not in got:
                problems.append(f"{tag or 'static'}: no output named {k!r}")
                continue
            why = compare(got[k], w, rtol, atol)
            if why:
                problems.append(f"{tag or 'static'} {k}: {why}")
    return problems


def check_model(ferry: str, path: str, tmp: str, rtol: float, atol: float) -> tuple[dict, list[str], str]:
    """(optimize report, problems, 'ok' | 'convert-differs' | 'FAIL')."""
    out = os.path.join(tmp, os.path.basename(path))
    proc = subprocess.run([ferry, "optimize", path, "-o", out, "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        return {}, [f"ferry optimize exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"], "FAIL"
    report = json.loads(proc.stdout)
    problems = check_outputs(path, out, rtol, atol)
    os.remove(out)
    if not problems:
        return report, [], "ok"
    conv = os.path.join(tmp, "convert-" + os.path.basename(path))
    cmd = [ferry, "convert", path, "-o", conv]
    if report.get("opset") is not None:
        cmd += ["--opset", str(report["opset"])]
    if subprocess.run(cmd, capture_output=True).returncode == 0:
        conv_problems = check_outputs(path, conv, rtol, atol)
        os.remove(conv)
        # The same outputs differ after a plain conversion: not optimize's doing.
        if {p.split(":")[0] for p in conv_problems} >= {p.split(":")[0] for p in problems}:
            return report, problems, "convert-differs"
    return report, problems, "FAIL"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--ferry", default=os.path.join(REPO, "target", "release", "ferry"))
    ap.add_argument("--filter", default=None)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    models = sorted(p for p in glob.glob(os.path.join(args.dir, "*.onnx"))
                    if os.path.exists(p[: -len(".onnx")] + ".ort.npz"))
    if args.filter:
        models = [m for m in models if re.search(args.filter, os.path.basename(m))]
    passed = failed = convert_differs = 0
    print(f"{'model':<40}{'nodes':>14}{'optimize s':>12}  verdict")
    with tempfile.TemporaryDirectory(prefix="ferry-optimize-") as tmp:
        for m in models:
            name = os.path.basename(m)[: -len(".onnx")]
            try:
                report, problems, verdict = check_model(args.ferry, m, tmp, args.rtol, args.atol)
            except Exception as e:  # noqa: BLE001 (onnxruntime refusing the output is a failure)
                report, problems, verdict = {}, [f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"], "FAIL"
            nodes = f"{report.get('nodes_before', '?')} -> {report.get('nodes_after', '?')}"
            secs = f"{report.get('optimize_seconds', 0):.3f}"
            detail = "" if not problems else " " + "; ".join(problems)
            print(f"{name:<40}{nodes:>14}{secs:>12}  {verdict}{detail}", flush=True)
            passed += verdict == "ok"
            convert_differs += verdict == "convert-differs"
            failed += verdict == "FAIL"
    print(f"({convert_differs} differ from onnxruntime after a plain `ferry convert` too: not counted)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
