#!/usr/bin/env python3
"""ferry's MXNet export checked in real MXNet 1.9.1 (not in CI: CI has no MXNet).

usage (with an MXNet venv: python3 -m venv V; V/bin/pip install mxnet==1.9.1 numpy==1.23.5):
  V/bin/python tests/mxnet/load_in_mxnet.py target/release/ferry [--parts fixtures,via-onnx,backend]
      [--shared DIR] [--data DIR] [--onnx-python PY] [--filter REGEX] [-q]

Parts:
  fixtures  every model and op fixture of ../shared/mxnet: `ferry convert` to MXNet files
            (out-symbol.json + out-0000.params), loaded with mx.gluon.SymbolBlock.imports and run on
            the recorded inputs, against MXNet's recorded outputs (max abs diff <= 1e-3 * max|ref|,
            output names too).
  via-onnx  the same from ferry's ONNX export of each fixture: MXNet -> ONNX -> MXNet.
  backend   the ONNX backend node cases (target/onnx-backend/node) that ferry exports to MXNet,
            loaded in MXNet and run against the backend's expected outputs (rtol 1e-3). Cases ferry
            refuses to export are counted as refused. Their .pb tensors are decoded by --onnx-python
            (a Python with the onnx package; default target/venv/bin/python), once for all cases.
A case MXNet refuses to load or run counts as failed. Prints one line per failure, then per part
"N passed, N failed (N refused)".
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import mxnet as mx
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))

DUMP_PB = r"""
import json, os, sys
import numpy as np
import onnx
from onnx import numpy_helper
out_dir = sys.argv[1]
for case in json.load(sys.stdin):
    m = onnx.load(os.path.join(case, "model.onnx"), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    ins = [i.name for i in m.graph.input if i.name not in inits]
    d = os.path.join(case, "test_data_set_0")
    arrays, meta = {}, {"inputs": [], "outputs": [o.name for o in m.graph.output], "ok": True}
    try:
        for k, name in enumerate(ins):
            t = onnx.TensorProto()
            t.ParseFromString(open(os.path.join(d, f"input_{k}.pb"), "rb").read())
            arrays[f"in{k}"] = numpy_helper.to_array(t)
            meta["inputs"].append(name)
        for k in range(len(m.graph.output)):
            t = onnx.TensorProto()
            t.ParseFromString(open(os.path.join(d, f"output_{k}.pb"), "rb").read())
            arrays[f"out{k}"] = numpy_helper.to_array(t)
    except Exception:
        meta["ok"] = False
    base = os.path.join(out_dir, os.path.basename(case))
    np.savez(base + ".npz", **arrays)
    json.dump(meta, open(base + ".json", "w"))
"""


def compare(got, ref):
    if got.shape != ref.shape:
        return f"shape {list(got.shape)} != {list(ref.shape)}"
    if ref.size == 0:
        return None
    if ref.dtype.kind in "biu" or ref.dtype == np.bool_:
        if not np.array_equal(got.astype(ref.dtype), ref):
            return f"values differ ({int(np.sum(got.astype(ref.dtype) != ref))} elements)"
        return None
    g, r = got.astype(np.float64), ref.astype(np.float64)
    if not np.all(np.isfinite(r) == np.isfinite(g)):
        return "non-finite values differ"
    fin = np.isfinite(r)
    scale = float(np.max(np.abs(r[fin]))) if fin.any() else 0.0
    diff = float(np.max(np.abs(g[fin] - r[fin]))) if fin.any() else 0.0
    tol = 1e-3 * scale if scale > 0 else 1e-6
    return f"max abs diff {diff:.3g} > {tol:.3g}" if diff > tol else None


def close(got, ref):
    """The backend runner's rule: rtol 1e-3 (1e-2 for 16-bit floats), exact for ints and bools."""
    if got.shape != ref.shape:
        return f"shape {list(got.shape)} != {list(ref.shape)}"
    if ref.dtype.kind in "biu" or ref.dtype == np.bool_:
        return None if np.array_equal(got.astype(ref.dtype), ref) else "values differ"
    tol = 1e-2 if ref.dtype.itemsize <= 2 else 1e-3
    if not np.allclose(got.astype(np.float64), ref.astype(np.float64), rtol=tol, atol=tol * 1e-2, equal_nan=True):
        return f"max abs diff {float(np.nanmax(np.abs(got.astype(np.float64) - ref))):.3g}"
    return None


def tail(p):
    return " | ".join((p.stderr.strip().splitlines() or ["failed"])[-2:])[:300]


def run_in_mxnet(symbol_file, feeds):
    """Loads ferry's MXNet files with SymbolBlock.imports and runs them; returns (names, arrays)."""
    params_file = symbol_file.replace("-symbol.json", "-0000.params")
    stored = set()
    if os.path.exists(params_file):
        loaded = mx.nd.load(params_file)
        stored = {k.split(":", 1)[-1] for k in loaded} if isinstance(loaded, dict) else set()
    sym = mx.sym.load(symbol_file)
    inputs = [n for n in sym.list_inputs() if n not in stored]
    missing = [n for n in inputs if n not in feeds]
    if missing:
        raise RuntimeError(f"MXNet graph inputs without data: {missing}")
    if not inputs:
        # A graph whose outputs read no input (constants): SymbolBlock needs an input, the
        # executor API does not.
        loaded = mx.nd.load(params_file) if stored else {}
        args = {k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("arg:")}
        aux = {k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("aux:")}
        outs = sym.bind(mx.cpu(), args=args, aux_states=aux).forward(is_train=False)
        return sym.list_outputs(), [o.asnumpy() for o in outs]
    block = mx.gluon.SymbolBlock.imports(symbol_file, inputs, params_file if stored else None)
    args = [mx.nd.array(feeds[n], dtype=feeds[n].dtype) for n in inputs]
    outs = block(*args)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return sym.list_outputs(), [o.asnumpy() for o in outs]


def fixture_cases(shared, regex):
    root = os.path.join(shared, "mxnet")
    for kind in ("models", "ops"):
        d = os.path.join(root, kind)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            case = os.path.join(d, name)
            label = f"{kind}/{name}"
            if os.path.isfile(os.path.join(case, "meta.json")) and (not regex or re.search(regex, label)):
                yield label, case


def fixture(ferry, case, tmp, via_onnx):
    meta = json.load(open(os.path.join(case, "meta.json")))
    shapes = []
    for i in meta["inputs"]:
        shapes += ["--input-shape", f"{i['name']}=" + ",".join(str(d) for d in i["shape"])]
        if i.get("dtype", "float32") != "float32":
            shapes += ["--input-type", f"{i['name']}={i['dtype']}"]
    src = os.path.join(case, "model-symbol.json")
    out = os.path.join(tmp, "out-symbol.json")
    if via_onnx:
        onnx_path = os.path.join(tmp, "model.onnx")
        p = subprocess.run([ferry, "convert", src, "-o", onnx_path] + shapes, capture_output=True, text=True)
        if p.returncode != 0:
            return "refused", "convert to ONNX: " + tail(p)
        src, shapes = onnx_path, []
    p = subprocess.run([ferry, "convert", src, "-o", out] + shapes, capture_output=True, text=True)
    if p.returncode != 0:
        return "refused", "convert to MXNet: " + tail(p)
    feeds = {i["name"]: np.load(os.path.join(case, i["file"])) for i in meta["inputs"]}
    try:
        names, outs = run_in_mxnet(out, feeds)
    except Exception as e:  # noqa: BLE001
        return "failed", "MXNet: " + " ".join(str(e).split())[:300]
    if len(outs) != len(meta["outputs"]):
        return "failed", f"{len(outs)} outputs, MXNet recorded {len(meta['outputs'])}"
    problems = []
    want = [o["name"] for o in meta["outputs"]]
    if names != want:
        problems.append(f"output names {names} != {want}")
    for k, o in enumerate(meta["outputs"]):
        why = compare(outs[k], np.load(os.path.join(case, o["file"])))
        if why:
            problems.append(f"output {k} ({o['name']}): {why}")
    return ("failed", "; ".join(problems)) if problems else ("passed", "")


def backend(a, counts, fails):
    root = os.path.join(a.data, "node")
    if not os.path.isdir(root):
        print(f"skipped backend: {root} not found")
        return
    work = tempfile.mkdtemp(prefix="ferry-mx-backend-")
    converted = []
    for name in sorted(os.listdir(root)):
        case = os.path.join(root, name)
        if not os.path.isfile(os.path.join(case, "model.onnx")) or (a.filter and not re.search(a.filter, name)):
            continue
        out = os.path.join(work, name, "out-symbol.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        p = subprocess.run([a.ferry, "convert", os.path.join(case, "model.onnx"), "-o", out],
                           capture_output=True, text=True)
        if p.returncode != 0:
            counts["refused"] += 1
            continue
        converted.append(case)
    data_dir = os.path.join(work, "data")
    os.makedirs(data_dir)
    subprocess.run([a.onnx_python, "-c", DUMP_PB, data_dir], input=json.dumps(converted), text=True, check=True)
    for case in converted:
        name = os.path.basename(case)
        meta = json.load(open(os.path.join(data_dir, name + ".json")))
        if not meta["ok"]:
            counts["refused"] += 1  # inputs that are not plain tensors (sequences, optionals)
            continue
        data = np.load(os.path.join(data_dir, name + ".npz"))
        feeds = {n: data[f"in{k}"] for k, n in enumerate(meta["inputs"])}
        try:
            _, outs = run_in_mxnet(os.path.join(work, name, "out-symbol.json"), feeds)
            why = None
            if len(outs) != len(meta["outputs"]):
                why = f"{len(outs)} outputs, expected {len(meta['outputs'])}"
            else:
                errs = [f"output {k}: {w}" for k in range(len(outs)) if (w := close(outs[k], data[f"out{k}"]))]
                why = "; ".join(errs) or None
        except Exception as e:  # noqa: BLE001
            why = "MXNet: " + " ".join(str(e).split())[:300]
        if why:
            counts["failed"] += 1
            fails.append(f"backend/{name}: {why}")
            print(f"FAIL backend/{name}: {why}")
        else:
            counts["passed"] += 1
            if not a.q:
                print(f"ok   backend/{name}")
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ferry")
    ap.add_argument("--parts", default="fixtures,via-onnx,backend")
    ap.add_argument("--shared", default=os.environ.get("FERRY_SHARED", DEFAULT_SHARED))
    ap.add_argument("--data", default=os.path.join(ROOT, "target", "onnx-backend"))
    ap.add_argument("--onnx-python", default=os.path.join(ROOT, "target", "venv", "bin", "python"))
    ap.add_argument("--filter", default="")
    ap.add_argument("-q", action="store_true", help="print failures only")
    a = ap.parse_args()
    summary = []
    for part in a.parts.split(","):
        counts = {"passed": 0, "failed": 0, "refused": 0}
        fails = []
        if part in ("fixtures", "via-onnx"):
            for label, case in fixture_cases(a.shared, a.filter):
                with tempfile.TemporaryDirectory() as tmp:
                    status, why = fixture(a.ferry, case, tmp, part == "via-onnx")
                counts[status] += 1
                if status != "passed":
                    print(f"{'FAIL' if status == 'failed' else 'skip'} {part}/{label}: {why}")
                elif not a.q:
                    print(f"ok   {part}/{label}")
                sys.stdout.flush()
        elif part == "backend":
            backend(a, counts, fails)
        else:
            ap.error(f"unknown part '{part}'")
        summary.append(f"{part}: {counts['passed']} passed, {counts['failed']} failed ({counts['refused']} refused)")
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
