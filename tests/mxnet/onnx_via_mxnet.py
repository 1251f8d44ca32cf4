#!/usr/bin/env python3
"""ONNX backend node tests through ferry's MXNet export: model.onnx -> out-symbol.json +
out-0000.params -> model.onnx, then onnxruntime (the ONNX reference evaluator where onnxruntime
cannot load it) on test_data_set_0 against the expected outputs.

usage: onnx_via_mxnet.py FERRY_BINARY [--data DIR] [--filter REGEX] [-q] [--expected FILE] [--update-expected]
Cases ferry refuses to export to MXNet (ops MXNet cannot express) are counted as "refused", not
failed. Prints "N passed, N failed" (plus refused); exit 1 if a case in the expected list fails.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def close(got, ref):
    got = np.asarray(got)
    if got.shape != ref.shape:
        return f"shape {list(got.shape)} != {list(ref.shape)}"
    if ref.dtype.kind in "biuU" or ref.dtype == np.bool_:
        return None if np.array_equal(got.astype(ref.dtype), ref) else "values differ"
    tol = 1e-2 if ref.dtype.itemsize <= 2 else 1e-3  # float16/bfloat16
    if not np.allclose(got.astype(np.float64), ref.astype(np.float64), rtol=tol, atol=tol * 1e-2, equal_nan=True):
        return f"max abs diff {float(np.nanmax(np.abs(got.astype(np.float64) - ref))):.3g}"
    return None


def run_case(ferry, case, tmp):
    model = os.path.join(case, "model.onnx")
    mx = os.path.join(tmp, "out-symbol.json")
    back = os.path.join(tmp, "back.onnx")
    p = subprocess.run([ferry, "convert", model, "-o", mx], capture_output=True, text=True)
    if p.returncode != 0:
        return "refused", p.stderr.strip().splitlines()[-1:] or ["failed"]
    m = onnx.load(model)
    inits = {i.name for i in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    names = {nd["name"] for nd in json.load(open(mx))["nodes"] if nd["op"] == "null"}
    d = os.path.join(case, "test_data_set_0")
    feeds = {}
    shapes = []
    for k, i in enumerate(ins):
        try:
            a = load_pb(os.path.join(d, f"input_{k}.pb"))
        except Exception:  # noqa: BLE001
            return "refused", ["input is not a plain tensor"]
        feeds[i.name] = a
        if i.name in names:
            shapes += ["--input-shape", f"{i.name}=" + ",".join(str(x) for x in a.shape)]
    p = subprocess.run([ferry, "convert", mx, "-o", back] + shapes, capture_output=True, text=True)
    if p.returncode != 0:
        return "failed", ["back to ONNX: " + (p.stderr.strip().splitlines() or ["failed"])[-1]]
    bm = onnx.load(back)
    wanted = [i.name for i in bm.graph.input]
    feeds = {k: v for k, v in feeds.items() if k in wanted}
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.log_severity_level = 3
        outs = ort.InferenceSession(back, so, providers=["CPUExecutionProvider"]).run(None, feeds)
    except Exception:  # noqa: BLE001
        try:
            from onnx.reference import ReferenceEvaluator
            outs = ReferenceEvaluator(bm).run(None, feeds)
        except Exception as e:  # noqa: BLE001
            return "failed", ["run: " + str(e).splitlines()[0][:200]]
    refs = sorted(f for f in os.listdir(d) if f.startswith("output_"))
    if len(outs) != len(refs):
        return "failed", [f"{len(outs)} outputs, expected {len(refs)}"]
    why = [f"output {k}: {w}" for k in range(len(refs)) if (w := close(outs[k], load_pb(os.path.join(d, f"output_{k}.pb"))))]
    return ("failed", why) if why else ("passed", [])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ferry")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "onnx-backend"))
    ap.add_argument("--filter", default="")
    ap.add_argument("-q", action="store_true")
    ap.add_argument("--expected", default=os.path.join(HERE, "onnx_via_mxnet_expected.txt"))
    ap.add_argument("--update-expected", action="store_true")
    a = ap.parse_args()
    root = os.path.join(a.data, "node")
    counts = {"passed": 0, "failed": 0, "refused": 0}
    passes, fails = [], {}
    for name in sorted(os.listdir(root)):
        case = os.path.join(root, name)
        if not os.path.isfile(os.path.join(case, "model.onnx")) or (a.filter and not re.search(a.filter, name)):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            status, why = run_case(a.ferry, case, tmp)
        counts[status] += 1
        if status == "passed":
            passes.append(name)
            if not a.q:
                print(f"ok   {name}")
        elif status == "failed":
            fails[name] = "; ".join(why)
            print(f"FAIL {name}: {fails[name]}")
        elif not a.q:
            print(f"skip {name}: {' '.join(why)[:200]}")
        sys.stdout.flush()
    if a.update_expected:
        with open(a.expected, "w") as f:
            f.write("".join(p + "\n" for p in passes))
    expected = set()
    if os.path.exists(a.expected):
        expected = {line.strip() for line in open(a.expected) if line.strip()}
    regressions = sorted(c for c in expected if c in fails or (c not in passes and not a.filter))
    for c in regressions:
        print(f"REGRESSION {c}: {fails.get(c, 'not passing')}")
    print(f"{counts['passed']} passed, {counts['failed']} failed ({counts['refused']} refused: not expressible in MXNet)")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
