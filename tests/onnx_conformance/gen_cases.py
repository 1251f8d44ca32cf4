#!/usr/bin/env python3
"""Materialize the ONNX backend test data under target/onnx-backend/.

Layout produced (mirrors what onnx packages < 1.23 shipped in
onnx/backend/test/data/):

    target/onnx-backend/<suite>/<case>/model.onnx
    target/onnx-backend/<suite>/<case>/test_data_set_0/input_K.pb
    target/onnx-backend/<suite>/<case>/test_data_set_0/output_K.pb

Suites:
  node               generated from onnx.backend.test.loader.load_node_model_tests()
                     (onnx >= 1.23 no longer ships these as files)
  simple, pytorch-converted, pytorch-operator
                     copied from the installed package's onnx/backend/test/data/

Tensor values are written as TensorProto, sequences as SequenceProto, optionals
as OptionalProto and maps as MapProto, exactly like onnx's own
`backend-test-tools generate-data` (onnx/backend/test/cmd_tools.py) does.

The output is cached: if target/onnx-backend/.stamp matches the installed onnx
version (and this generator's version), nothing is done. Use --force to
regenerate.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import time
import warnings
from typing import Any

# Bump when the on-disk layout / serialization logic changes so that caches
# produced by an older generator are rebuilt.
GENERATOR_VERSION = 1

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO_ROOT, "target", "onnx-backend")

COPIED_SUITES = ("simple", "pytorch-converted", "pytorch-operator")
ALL_SUITES = ("node",) + COPIED_SUITES


def ensure_venv() -> None:
    """Re-exec under target/venv's python if the current one lacks onnx."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        venv_py = os.path.join(REPO_ROOT, "target", "venv", "bin", "python")
        if os.path.exists(venv_py) and os.path.realpath(sys.prefix) != os.path.realpath(
                os.path.join(REPO_ROOT, "target", "venv")):
            os.execv(venv_py, [venv_py] + sys.argv)
        sys.exit("error: onnx is not importable; run scripts/setup-venv.sh and use target/venv/bin/python")


def stamp_text() -> str:
    import onnx

    return f"onnx={onnx.__version__} generator={GENERATOR_VERSION}\n"


def _write_value(path: str, value: Any, type_proto: Any, name: str) -> None:
    """Serialize one input/output value according to the graph's declared type."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    kind = type_proto.WhichOneof("value")
    if kind == "map_type":
        proto = numpy_helper.from_dict(value, name)
    elif kind == "sequence_type":
        proto = numpy_helper.from_list(list(value), name)
    elif kind == "optional_type":
        if value is not None and not isinstance(value, (list, dict, onnx.TensorProto)):
            value = np.asarray(value)
        if isinstance(value, onnx.TensorProto):
            proto = onnx.OptionalProto(name=name, elem_type=onnx.OptionalProto.TENSOR)
            proto.tensor_value.CopyFrom(value)
        else:
            proto = numpy_helper.from_optional(value, name)
    elif kind == "tensor_type":
        if isinstance(value, onnx.TensorProto):
            proto = value
        else:
            # Some cases pass numpy scalars (np.float32(...)) instead of 0-d arrays.
            proto = numpy_helper.from_array(np.asarray(value), name)
    else:
        raise TypeError(f"unsupported value type {kind!r} for {name!r}")
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def _gen_node(out_dir: str, verbose: bool) -> dict[str, Any]:
    from onnx.backend.test.loader import load_node_model_tests

    with warnings.catch_warnings():
        # the case definitions deliberately overflow casts, divide by zero, ...
        warnings.simplefilter("ignore")
        cases = load_node_model_tests()

    suite_dir = os.path.join(out_dir, "node")
    os.makedirs(suite_dir, exist_ok=True)
    written = 0
    problems: dict[str, str] = {}
    for case in cases:
        case_dir = os.path.join(suite_dir, case.name)
        try:
            assert case.model is not None and case.data_sets is not None
            if os.path.exists(case_dir):
                shutil.rmtree(case_dir)
            os.makedirs(case_dir)
            with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
                f.write(case.model.SerializeToString())
            graph = case.model.graph
            for i, (inputs, outputs) in enumerate(case.data_sets):
                ds = os.path.join(case_dir, f"test_data_set_{i}")
                os.makedirs(ds)
                for j, value in enumerate(inputs):
                    vi = graph.input[j]
                    _write_value(os.path.join(ds, f"input_{j}.pb"), value, vi.type, vi.name)
                for j, value in enumerate(outputs):
                    vi = graph.output[j]
                    _write_value(os.path.join(ds, f"output_{j}.pb"), value, vi.type, vi.name)
            if case.rtol != 1e-3 or case.atol != 1e-7:
                with open(os.path.join(case_dir, "data.json"), "w") as f:
                    json.dump({"rtol": case.rtol, "atol": case.atol}, f)
            written += 1
        except Exception as e:  # keep going; report at the end
            problems[case.name] = f"{type(e).__name__}: {e}"
            shutil.rmtree(case_dir, ignore_errors=True)
            if verbose:
                print(f"  node/{case.name}: cannot write: {problems[case.name]}", file=sys.stderr)
    return {"cases": len(cases), "written": written, "problems": problems}


def _copy_suite(suite: str, out_dir: str) -> dict[str, Any]:
    import onnx

    src = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", suite)
    dst = os.path.join(out_dir, suite)
    if os.path.exists(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    n = 0
    for name in sorted(os.listdir(src)):
        s = os.path.join(src, name)
        if os.path.isdir(s) and os.path.exists(os.path.join(s, "model.onnx")):
            shutil.copytree(s, os.path.join(dst, name))
            n += 1
    return {"cases": n, "written": n, "problems": {}}


def generate(out_dir: str = DEFAULT_OUT, force: bool = False, verbose: bool = True) -> bool:
    """Generate the test data if the cache is stale. Returns True if work was done."""
    os.makedirs(out_dir, exist_ok=True)
    stamp_path = os.path.join(out_dir, ".stamp")
    with open(os.path.join(out_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # serialize concurrent generators
        want = stamp_text()
        if not force and os.path.exists(stamp_path):
            with open(stamp_path) as f:
                if f.read() == want:
                    return False
        if os.path.exists(stamp_path):
            os.remove(stamp_path)
        t0 = time.monotonic()
        report: dict[str, Any] = {}
        report["node"] = _gen_node(out_dir, verbose)
        for suite in COPIED_SUITES:
            report[suite] = _copy_suite(suite, out_dir)
        with open(os.path.join(out_dir, "gen-report.json"), "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
        with open(stamp_path, "w") as f:
            f.write(want)
        if verbose:
            parts = ", ".join(f"{s}: {r['written']}" for s, r in report.items())
            print(f"gen_cases: wrote {parts} cases to {out_dir} in {time.monotonic() - t0:.1f}s")
            nprob = sum(len(r["problems"]) for r in report.values())
            if nprob:
                print(f"gen_cases: {nprob} case(s) could not be written, see gen-report.json")
        return True


def main() -> int:
    ensure_venv()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="regenerate even if the stamp is current")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    did = generate(args.out, force=args.force, verbose=not args.quiet)
    if not did and not args.quiet:
        print(f"gen_cases: {args.out} is up to date ({stamp_text().strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
