#!/usr/bin/env python3
"""Convert every MXNet model and op fixture in ../shared/mxnet to ONNX with ferry, run the result
with onnxruntime on the recorded inputs and compare with MXNet's recorded outputs
(max abs diff <= 1e-3 * max|ref|).

usage: compare_onnx.py FERRY_BINARY [--shared DIR] [--filter REGEX] [--keep DIR] [-q] [--via-mxnet]

--via-mxnet: convert the fixture to MXNet files with ferry first (out-symbol.json +
out-0000.params), then those to ONNX: MXNet -> ferry IR -> MXNet -> ferry IR -> ONNX.
Prints one line per case and a final "N passed, N failed" line; exit status 1 if any failed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ORT_FALLBACK_OPSET = 21
DEFAULT_SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared"))


def cases(shared, regex):
    root = os.path.join(shared, "mxnet")
    for kind in ("models", "ops"):
        d = os.path.join(root, kind)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            case = os.path.join(d, name)
            if not os.path.isfile(os.path.join(case, "meta.json")):
                continue
            label = f"{kind}/{name}"
            if regex and not re.search(regex, label):
                continue
            yield label, case


def compare(got, ref):
    if got.shape != ref.shape:
        return f"shape {list(got.shape)} != {list(ref.shape)}"
    if ref.size == 0:
        return None
    if ref.dtype.kind in "biu" or ref.dtype == np.bool_:
        if not np.array_equal(got.astype(ref.dtype), ref):
            return f"values differ ({int(np.sum(got.astype(ref.dtype) != ref))} elements)"
        return None
    g = got.astype(np.float64)
    r = ref.astype(np.float64)
    scale = float(np.max(np.abs(r))) if r.size else 0.0
    if not np.all(np.isfinite(r) == np.isfinite(g)):
        return "non-finite values differ"
    fin = np.isfinite(r)
    diff = float(np.max(np.abs(g[fin] - r[fin]))) if fin.any() else 0.0
    tol = 1e-3 * scale if scale > 0 else 1e-6
    if diff > tol:
        return f"max abs diff {diff:.3g} > {tol:.3g} (max|ref| {scale:.3g})"
    return None


def run_case(ferry, case, out_dir, via_mxnet=False):
    meta = json.load(open(os.path.join(case, "meta.json")))
    onnx_path = os.path.join(out_dir, "model.onnx")
    shapes = []
    for i in meta["inputs"]:
        shapes += ["--input-shape", f"{i['name']}=" + ",".join(str(d) for d in i["shape"])]
        if i.get("dtype", "float32") != "float32":
            shapes += ["--input-type", f"{i['name']}={i['dtype']}"]
    src = os.path.join(case, "model-symbol.json")
    if via_mxnet:
        mx_path = os.path.join(out_dir, "out-symbol.json")
        p = subprocess.run([ferry, "convert", src, "-o", mx_path] + shapes, capture_output=True, text=True)
        if p.returncode != 0:
            return "convert to MXNet: " + " | ".join(p.stderr.strip().splitlines()[-3:] or ["failed"])
        src = mx_path
        names = {nd["name"] for nd in json.load(open(mx_path))["nodes"] if nd["op"] == "null"}
        shapes = []
        for i in meta["inputs"]:
            if i["name"] in names:
                shapes += ["--input-shape", f"{i['name']}=" + ",".join(str(d) for d in i["shape"])]
    p = subprocess.run([ferry, "convert", src, "-o", onnx_path] + shapes, capture_output=True, text=True)
    if p.returncode != 0:
        return "convert: " + (p.stderr.strip().splitlines() or ["failed"])[-1]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        # onnxruntime 1.32 has no kernels for some opset-22 op versions (RoiAlign-22,
        # MaxRoiPool-22: only their type lists grew); the same graph at opset 21 is what it runs.
        if "NOT_IMPLEMENTED" not in str(e):
            return "onnxruntime load: " + str(e).splitlines()[0][:300]
        p = subprocess.run([ferry, "convert", src, "-o", onnx_path, "--opset", str(ORT_FALLBACK_OPSET)] + shapes,
                           capture_output=True, text=True)
        if p.returncode != 0:
            return "convert at opset 21: " + (p.stderr.strip().splitlines() or ["failed"])[-1]
        try:
            sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        except Exception as e2:  # noqa: BLE001
            return "onnxruntime load: " + str(e2).splitlines()[0][:300]
    feeds = {}
    for i in meta["inputs"]:
        feeds[i["name"]] = np.load(os.path.join(case, i["file"]))
    if via_mxnet:
        # Inputs the graph never reads are not inputs of the MXNet export.
        wanted = {i.name for i in sess.get_inputs()}
        feeds = {k: v for k, v in feeds.items() if k in wanted}
    names = [o.name for o in sess.get_outputs()]
    want_names = [o["name"] for o in meta["outputs"]]
    try:
        outs = sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001
        return "onnxruntime run: " + str(e).splitlines()[0][:300]
    if len(outs) != len(meta["outputs"]):
        return f"{len(outs)} outputs, MXNet has {len(meta['outputs'])}"
    problems = []
    if names != want_names:
        problems.append(f"output names {names} != {want_names}")
    for k, o in enumerate(meta["outputs"]):
        ref = np.load(os.path.join(case, o["file"]))
        why = compare(np.asarray(outs[k]), ref)
        if why:
            problems.append(f"output {k} ({o['name']}): {why}")
    return "; ".join(problems) or None


def run_case_on_ferry(ferry, case, out_dir, path):
    """`ferry run` on the MXNet files themselves (on execution path `path`), against MXNet's outputs."""
    meta = json.load(open(os.path.join(case, "meta.json")))
    cmd = [ferry, "run", os.path.join(case, "model-symbol.json"), "--output-dir", out_dir]
    if path:
        cmd += ["--path", path]
    for i in meta["inputs"]:
        cmd += ["--input", f"{i['name']}=" + os.path.join(case, i["file"])]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return "ferry run: " + (p.stderr.strip().splitlines() or ["failed"])[-1]
    listed = json.load(open(os.path.join(out_dir, "outputs.json")))["outputs"]
    if len(listed) != len(meta["outputs"]):
        return f"{len(listed)} outputs, MXNet has {len(meta['outputs'])}"
    problems = []
    names = [o["name"] for o in listed]
    want_names = [o["name"] for o in meta["outputs"]]
    if names != want_names:
        problems.append(f"output names {names} != {want_names}")
    for k, o in enumerate(meta["outputs"]):
        got = np.load(os.path.join(out_dir, f"output_{k}.npy"))
        why = compare(got, np.load(os.path.join(case, o["file"])))
        if why:
            problems.append(f"output {k} ({o['name']}): {why}")
    return "; ".join(problems) or None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ferry")
    ap.add_argument("--shared", default=os.environ.get("FERRY_SHARED", DEFAULT_SHARED))
    ap.add_argument("--filter", default="")
    ap.add_argument("--keep", help="keep converted models under this directory")
    ap.add_argument("-q", action="store_true", help="print failures only")
    ap.add_argument("--expected", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected.txt"),
                    help="cases that must pass (a failing one fails the run); missing file: all must pass")
    ap.add_argument("--update-expected", action="store_true", help="rewrite the expected list with the passes")
    ap.add_argument("--via-mxnet", action="store_true",
                    help="go through ferry's MXNet export first (default expected list: expected_via_mxnet.txt)")
    ap.add_argument("--run", action="store_true",
                    help="run the MXNet files with `ferry run` instead of converting to ONNX "
                         "(default expected list: expected_run.txt)")
    ap.add_argument("--path", choices=["reference", "optimized"],
                    help="with --run: the execution path for `ferry run` (default: ferry's default)")
    a = ap.parse_args()
    if a.run and a.expected == ap.get_default("expected"):
        a.expected = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected_run.txt")
    if a.via_mxnet and a.expected == ap.get_default("expected"):
        a.expected = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected_via_mxnet.txt")
    if not os.path.isdir(os.path.join(a.shared, "mxnet")):
        print(f"skipped: {a.shared}/mxnet not found")
        print("0 passed, 0 failed")
        return 0
    passed = failed = 0
    passes = []
    failures = {}
    for label, case in cases(a.shared, a.filter):
        if a.keep:
            out_dir = os.path.join(a.keep, label.replace("/", "__"))
            os.makedirs(out_dir, exist_ok=True)
            why = run_case_on_ferry(a.ferry, case, out_dir, a.path) if a.run else run_case(a.ferry, case, out_dir, a.via_mxnet)
        else:
            with tempfile.TemporaryDirectory() as out_dir:
                if a.run:
                    why = run_case_on_ferry(a.ferry, case, out_dir, a.path)
                else:
                    why = run_case(a.ferry, case, out_dir, a.via_mxnet)
        if why:
            failed += 1
            failures[label] = why
            print(f"FAIL {label}: {why}")
        else:
            passed += 1
            passes.append(label)
            if not a.q:
                print(f"ok   {label}")
        sys.stdout.flush()
    if a.update_expected:
        with open(a.expected, "w") as f:
            f.write("".join(p + "\n" for p in sorted(passes)))
    expected = None
    if os.path.exists(a.expected):
        with open(a.expected) as f:
            expected = {line.strip() for line in f if line.strip()}
    regressions = sorted(failures) if expected is None else sorted(c for c in failures if c in expected)
    new = [] if expected is None else sorted(c for c in passes if c not in expected)
    if new:
        print(f"{len(new)} case(s) newly pass; record them with --update-expected")
    for c in regressions:
        print(f"REGRESSION {c}: {failures[c]}")
    print(f"{passed} passed, {failed} failed")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
