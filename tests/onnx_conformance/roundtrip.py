#!/usr/bin/env python3
"""ONNX backend-test round-trip harness for `ferry convert` (or, with --optimize, `ferry optimize`).

For every case of the ONNX backend test data (see gen_cases.py):

  baseline  onnx.reference.ReferenceEvaluator must reproduce the case's expected
            outputs from the ORIGINAL model; cases where it does not are skipped
            (verdicts cached in target/onnx-backend/baseline-<onnx version>.json)
  convert   `ferry convert model.onnx -o out.onnx [--opset N]` exits 0
            (exit 101 or death by signal = CRASH, a hang = TIMEOUT)
  checker   onnx.checker.check_model(out.onnx, full_check=True) passes
  opset     with --opset N, out.onnx imports ai.onnx version N
  outputs   ReferenceEvaluator on out.onnx reproduces the expected outputs

With --optimize the convert stage runs `ferry optimize model.onnx -o out.onnx` instead (the
simplified model is written at the original opset, or --opset N); the same checks follow.

Outputs are compared like onnx's backend test runner: assert_allclose with the
case's rtol/atol (default 1e-3/1e-7), exact for strings, rtol >= 2**-6 for
bfloat16, sequences element-wise, optionals by presence and value.

Cases listed in tests/onnx_conformance/expected/roundtrip[-optimize][-opsetN].txt must pass;
a listed case that fails is a REGRESSION (exit status 1). See README.md.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, deque
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import gen_cases  # noqa: E402

REPO_ROOT = gen_cases.REPO_ROOT
DEFAULT_FERRY = os.path.join(REPO_ROOT, "target", "release", "ferry")
EXPECTED_DIR = os.path.join(HERE, "expected")
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-7
# Bump to invalidate cached baseline verdicts when the comparison logic changes.
BASELINE_LOGIC_VERSION = 1


# --------------------------------------------------------------------------
# small helpers


class StageTimeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise StageTimeout()


def with_timeout(seconds: float, fn: Any, *args: Any) -> Any:
    """Run fn(*args), raising StageTimeout after `seconds` (SIGALRM based)."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def short(msg: Any, limit: int = 300) -> str:
    """Collapse an error message into one reasonably short line."""
    text = " ".join(str(msg).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exc_reason(e: BaseException) -> str:
    return short(f"{type(e).__name__}: {e}")


def ai_onnx_opset(model: Any) -> int | None:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


def case_sha(case_dir: str) -> str:
    """sha256 over model.onnx and all test data (the baseline cache key)."""
    h = hashlib.sha256()
    files = [os.path.join(case_dir, "model.onnx")]
    files += sorted(glob.glob(os.path.join(case_dir, "test_data_set_*", "*.pb")))
    for path in files:
        h.update(os.path.relpath(path, case_dir).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


# --------------------------------------------------------------------------
# test data loading and comparison


def load_value(path: str, type_proto: Any) -> Any:
    import onnx
    from onnx import numpy_helper

    with open(path, "rb") as f:
        data = f.read()
    kind = type_proto.WhichOneof("value")
    if kind == "sequence_type":
        p = onnx.SequenceProto()
        p.ParseFromString(data)
        return numpy_helper.to_list(p)
    if kind == "optional_type":
        p = onnx.OptionalProto()
        p.ParseFromString(data)
        return numpy_helper.to_optional(p)
    if kind == "map_type":
        p = onnx.MapProto()
        p.ParseFromString(data)
        return numpy_helper.to_dict(p)
    p = onnx.TensorProto()
    p.ParseFromString(data)
    return numpy_helper.to_array(p)


def load_data_sets(case_dir: str, model: Any) -> list[tuple[dict[str, Any], list[Any]]]:
    """Returns [(feeds by input name, expected outputs in graph.output order)]."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in inits]
    sets = []
    for ds in sorted(glob.glob(os.path.join(case_dir, "test_data_set_*"))):
        n_in = len(glob.glob(os.path.join(ds, "input_*.pb")))
        n_out = len(glob.glob(os.path.join(ds, "output_*.pb")))
        # Inputs are positional; old models list initializers as inputs too.
        bind = real_inputs if n_in == len(real_inputs) else list(graph.input)[:n_in]
        feeds = {vi.name: load_value(os.path.join(ds, f"input_{k}.pb"), vi.type) for k, vi in enumerate(bind)}
        if n_out != len(graph.output):
            raise ValueError(f"{n_out} expected outputs for {len(graph.output)} graph outputs")
        expected = [load_value(os.path.join(ds, f"output_{k}.pb"), graph.output[k].type) for k in range(n_out)]
        sets.append((feeds, expected))
    if not sets:
        raise ValueError("no test_data_set_*")
    return sets


def case_tolerances(case_dir: str) -> tuple[float, float]:
    path = os.path.join(case_dir, "data.json")
    if os.path.exists(path):
        with open(path) as f:
            d = json.load(f)
        return float(d.get("rtol", DEFAULT_RTOL)), float(d.get("atol", DEFAULT_ATOL))
    return DEFAULT_RTOL, DEFAULT_ATOL


def compare(expected: Any, got: Any, rtol: float, atol: float, where: str) -> None:
    """Raise AssertionError if `got` does not match `expected`."""
    import numpy as np

    if expected is None:  # empty optional
        if got is not None:
            raise AssertionError(f"{where}: expected an empty optional, got {type(got).__name__}")
        return
    if got is None:
        raise AssertionError(f"{where}: expected a value, got None (empty optional)")
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            raise AssertionError(f"{where}: map keys differ")
        for k in expected:
            compare(expected[k], got[k], rtol, atol, f"{where}[{k!r}]")
        return
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            raise AssertionError(f"{where}: expected a sequence, got {type(got).__name__}")
        if len(got) != len(expected):
            raise AssertionError(f"{where}: sequence length {len(got)} != expected {len(expected)}")
        for k, (e, g) in enumerate(zip(expected, got)):
            compare(e, g, rtol, atol, f"{where}[{k}]")
        return
    if isinstance(got, (list, tuple, dict)):
        raise AssertionError(f"{where}: expected a tensor, got {type(got).__name__}")
    exp = np.asarray(expected)
    out = np.asarray(got)
    if out.shape != exp.shape:
        raise AssertionError(f"{where}: shape {out.shape} != expected {exp.shape}")
    if exp.dtype == object or exp.dtype.kind in "US":
        np.testing.assert_array_equal(out, exp, err_msg=where)
        return
    if out.dtype != exp.dtype:
        raise AssertionError(f"{where}: dtype {out.dtype} != expected {exp.dtype}")
    if exp.dtype.kind == "V":  # ml_dtypes: bfloat16, float8*, int4, float4, ...
        if exp.dtype.name == "bfloat16":
            rtol = max(rtol, 2**-6)  # two bfloat16 ulps, like onnx's runner
        exp = exp.astype(np.float32)
        out = out.astype(np.float32)
    np.testing.assert_allclose(out, exp, rtol=rtol, atol=atol, err_msg=where)


def evaluate(model: Any, data_sets: list, output_names: list[str], rtol: float, atol: float) -> None:
    """Run the reference evaluator on every data set and compare outputs."""
    from onnx.reference import ReferenceEvaluator

    sess = ReferenceEvaluator(model)
    for feeds, expected in data_sets:
        got = sess.run(output_names, dict(feeds))
        if len(got) != len(expected):
            raise AssertionError(f"{len(got)} outputs, expected {len(expected)}")
        for k, (e, g) in enumerate(zip(expected, got)):
            compare(e, g, rtol, atol, f"output {k} ({output_names[k]})")


# --------------------------------------------------------------------------
# per-case work (runs in a worker process)


def compute_baseline(model_path: str, case_dir: str, timeout: float) -> dict[str, Any]:
    import onnx

    t0 = time.monotonic()
    res: dict[str, Any] = {"logic": BASELINE_LOGIC_VERSION}
    try:
        onnx.checker.check_model(model_path, full_check=True)
        res["checker_ok"] = True
    except Exception as e:  # noqa: BLE001
        res["checker_ok"] = False
        res["checker_reason"] = exc_reason(e)
    try:
        model = onnx.load(model_path)
        res["opset"] = ai_onnx_opset(model)
        rtol, atol = case_tolerances(case_dir)
        data_sets = load_data_sets(case_dir, model)
        names = [o.name for o in model.graph.output]
        with_timeout(timeout, evaluate, model, data_sets, names, rtol, atol)
        res["ok"] = True
    except StageTimeout:
        res["ok"] = False
        res["reason"] = f"timeout after {timeout:g}s"
        res["timeout"] = True
    except Exception as e:  # noqa: BLE001
        res["ok"] = False
        res["reason"] = exc_reason(e)
    res["seconds"] = round(time.monotonic() - t0, 3)
    return res


def describe_crash(rc: int, stderr: str) -> str:
    if rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
        head = f"killed by {sig}"
    else:
        head = f"exit {rc}"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "panicked" in ln:
            return short(" ".join([head + ":"] + lines[i : i + 2]))
    if not lines:
        return head + " (no stderr)"
    return short(" ".join([head + ":"] + lines[-2:]))


def roundtrip_case(task: dict[str, Any], stage_cb: Any) -> dict[str, Any]:
    import onnx

    key, case_dir, opts = task["key"], task["dir"], task["opts"]
    timeout = opts["timeout"]
    model_path = os.path.join(case_dir, "model.onnx")
    res: dict[str, Any] = {"key": key}
    target_opset = opts["opset"]

    stage_cb("load")
    model = onnx.load(model_path, load_external_data=False)
    opset = ai_onnx_opset(model)
    res["opset"] = opset
    if target_opset is not None:
        if opset is None:
            return {**res, "status": "skip", "reason": "no ai.onnx opset import"}
        if opset < target_opset:
            return {**res, "status": "skip", "reason": f"original opset {opset} < {target_opset}"}

    baseline = task.get("baseline")
    if baseline is None:
        stage_cb("baseline")
        baseline = compute_baseline(model_path, case_dir, timeout)
        res["new_baseline"] = baseline
    if opts["baseline_only"]:
        ok = baseline["ok"]
        return {**res, "status": "pass" if ok else "fail", "stage": None if ok else "baseline",
                "reason": baseline.get("reason", "")}
    if not baseline["ok"]:
        return {**res, "status": "skip",
                "reason": "reference evaluator fails the original: " + baseline.get("reason", "")}

    def fail(stage: str, reason: str) -> dict[str, Any]:
        return {**res, "status": "fail", "stage": stage, "reason": reason}

    # b. convert
    stage_cb("convert")
    out_dir = os.path.join(opts["tmp"], key.replace("/", "__"))
    os.makedirs(out_dir, exist_ok=True)
    out_path = os.path.join(out_dir, "out.onnx")
    cmd = list(opts["ferry"]) + [opts["command"], model_path, "-o", out_path]
    if target_opset is not None:
        cmd += ["--opset", str(target_opset)]
    try:
        # own session, so that a hang can be killed together with any children
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return fail("timeout", f"ferry {opts['command']} did not finish within {timeout:g}s")
        stderr = err.decode("utf-8", "replace")
        if proc.returncode == 101 or proc.returncode < 0:
            return fail("crash", describe_crash(proc.returncode, stderr))
        if proc.returncode != 0:
            lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
            what = {1: "refused", 2: "usage error"}.get(proc.returncode, "failed")
            return fail("convert", short(f"{what} (exit {proc.returncode}): {lines[-1] if lines else '<no stderr>'}"))
        if not os.path.isfile(out_path):
            return fail("convert", "exit 0 but no output file written")

        # c. checker
        stage_cb("checker")
        try:
            onnx.checker.check_model(out_path, full_check=True)
        except Exception as e:  # noqa: BLE001
            reason = exc_reason(e)
            if not baseline.get("checker_ok", True):
                reason += " (the original fails the checker too)"
            return fail("checker", reason.replace(out_path, "out.onnx"))
        try:
            out_model = onnx.load(out_path)
        except Exception as e:  # noqa: BLE001
            return fail("checker", "cannot load output: " + exc_reason(e))

        # d. opset
        if target_opset is not None:
            got = ai_onnx_opset(out_model)
            if got != target_opset:
                return fail("opset", f"ai.onnx opset import is {got}, expected {target_opset}")

        # e. outputs
        stage_cb("outputs")
        try:
            data_sets = load_data_sets(case_dir, model)
            out_inputs = {i.name for i in out_model.graph.input}
            for feeds, _ in data_sets:
                missing = [n for n in feeds if n not in out_inputs]
                if missing:
                    return fail("outputs", f"converted model has no input named {missing[0]!r}")
            names = [o.name for o in model.graph.output]
            out_outputs = {o.name for o in out_model.graph.output}
            missing = [n for n in names if n not in out_outputs]
            if missing:
                return fail("outputs", f"converted model has no output named {missing[0]!r}")
            rtol, atol = case_tolerances(case_dir)
            with_timeout(timeout, evaluate, out_model, data_sets, names, rtol, atol)
        except StageTimeout:
            return fail("outputs", f"reference evaluator timed out after {timeout:g}s on the output")
        except Exception as e:  # noqa: BLE001
            return fail("outputs", exc_reason(e))
        return {**res, "status": "pass"}
    finally:
        if opts["keep"] is not None:
            dst = os.path.join(opts["keep"], key)
            os.makedirs(dst, exist_ok=True)
            if os.path.isfile(out_path):
                shutil.copyfile(out_path, os.path.join(dst, "out.onnx"))
        shutil.rmtree(out_dir, ignore_errors=True)


def run_case(task: dict[str, Any], stage_cb: Any) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        res = roundtrip_case(task, stage_cb)
    except Exception as e:  # noqa: BLE001  # harness bug or unreadable case
        res = {"key": task["key"], "status": "fail", "stage": "harness", "reason": exc_reason(e)}
    res["seconds"] = round(time.monotonic() - t0, 3)
    return res


def worker_main(conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
    import numpy as np

    np.seterr(all="ignore")
    while True:
        task = conn.recv()
        if task is None:
            return
        key = task["key"]
        res = run_case(task, lambda stage: conn.send(("stage", key, stage)))
        conn.send(("result", key, res))


# --------------------------------------------------------------------------
# process pool that survives worker crashes and enforces a hard time limit


class Worker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.task: dict[str, Any] | None = None
        self.stage = ""
        self.started = 0.0

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


def run_all(tasks: list[dict[str, Any]], jobs: int, hard_limit: float, on_result: Any) -> None:
    ctx = multiprocessing.get_context("fork")
    pending = deque(tasks)
    workers = [Worker(ctx) for _ in range(max(1, min(jobs, len(tasks))))]
    try:
        while pending or any(w.task is not None for w in workers):
            for i, w in enumerate(workers):
                if w.task is None and pending:
                    w.task, w.stage, w.started = pending.popleft(), "start", time.monotonic()
                    w.conn.send(w.task)
            busy = [w for w in workers if w.task is not None]
            multiprocessing.connection.wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=1.0)
            for i, w in enumerate(workers):
                if w.task is None:
                    continue
                key = w.task["key"]
                done = None
                try:
                    while w.conn.poll():
                        kind, _, payload = w.conn.recv()
                        if kind == "stage":
                            w.stage = payload
                        else:
                            done = payload
                            break
                except (EOFError, OSError):
                    pass
                if done is None and not w.proc.is_alive():
                    code = w.proc.exitcode
                    why = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
                    done = {"key": key, "status": "fail", "stage": "harness",
                            "reason": f"harness worker died ({why}) during stage {w.stage!r}",
                            "died_in": w.stage, "seconds": round(time.monotonic() - w.started, 3)}
                elif done is None and time.monotonic() - w.started > hard_limit:
                    done = {"key": key, "status": "fail", "stage": "timeout",
                            "reason": f"case exceeded the hard limit of {hard_limit:g}s in stage {w.stage!r}",
                            "died_in": w.stage, "seconds": round(time.monotonic() - w.started, 3)}
                    w.proc.kill()
                if done is None:
                    continue
                if not w.proc.is_alive():
                    w.kill()
                    workers[i] = Worker(ctx)
                else:
                    w.task = None
                on_result(done)
    finally:
        for w in workers:
            try:
                w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for w in workers:
            w.proc.join(2)
            w.kill()


# --------------------------------------------------------------------------
# bookkeeping


def discover(data_dir: str, suites: list[str], pattern: str | None) -> list[tuple[str, str]]:
    rx = re.compile(pattern) if pattern else None
    cases = []
    for suite in suites:
        sdir = os.path.join(data_dir, suite)
        if not os.path.isdir(sdir):
            continue
        for name in sorted(os.listdir(sdir)):
            cdir = os.path.join(sdir, name)
            key = f"{suite}/{name}"
            if not os.path.isfile(os.path.join(cdir, "model.onnx")):
                continue
            if rx and not rx.search(key):
                continue
            cases.append((key, cdir))
    return cases


def read_list(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main() -> int:
    gen_cases.ensure_venv()
    ap = argparse.ArgumentParser(
        description="Round-trip the ONNX backend test cases through `ferry convert`.",
        epilog="The last line of stdout is 'N passed, N failed, N skipped'.")
    ap.add_argument("--ferry", default=None,
                    help=f"ferry command, split like a shell word list (default: {os.path.relpath(DEFAULT_FERRY, REPO_ROOT)})")
    ap.add_argument("--opset", type=int, default=None,
                    help="pass --opset N to ferry; check the output's ai.onnx opset; only count cases whose original opset >= N")
    ap.add_argument("--optimize", action="store_true",
                    help="run `ferry optimize` instead of `ferry convert` (expected list: roundtrip-optimize[-opsetN].txt)")
    ap.add_argument("--suites", default=",".join(gen_cases.ALL_SUITES),
                    help="comma-separated suites (default: %(default)s)")
    ap.add_argument("--filter", default=None, metavar="REGEX", help="only cases whose 'suite/name' matches (re.search)")
    ap.add_argument("-j", "--jobs", type=int, default=len(os.sched_getaffinity(0)) or 1, help="worker processes (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds for ferry and for each reference-evaluator run (default: %(default)s)")
    ap.add_argument("--expected", default=None, help="expected-pass list (default: expected/roundtrip[-opsetN].txt)")
    ap.add_argument("--update-expected", action="store_true",
                    help="rewrite the expected list with the current passes (entries outside the selected cases are kept)")
    ap.add_argument("--allow-crashes", action="store_true", help="do not exit 1 because of CRASH cases that are not regressions")
    ap.add_argument("--baseline-only", action="store_true", help="only compute/show the reference-evaluator baseline")
    ap.add_argument("--rebaseline", action="store_true", help="ignore cached baseline verdicts")
    ap.add_argument("--keep-outputs", default=None, metavar="DIR", help="keep converted models under DIR/<suite>/<case>/out.onnx")
    ap.add_argument("--data", default=gen_cases.DEFAULT_OUT, help="test data directory (default: %(default)s)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    args = ap.parse_args()

    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = [s for s in suites if s not in gen_cases.ALL_SUITES]
    if unknown:
        ap.error(f"unknown suite(s) {unknown}; known: {', '.join(gen_cases.ALL_SUITES)}")
    if args.filter:
        try:
            re.compile(args.filter)
        except re.error as e:
            ap.error(f"bad --filter: {e}")

    if args.ferry is None:
        ferry = [DEFAULT_FERRY]
    else:
        ferry = shlex.split(args.ferry)
    if not args.baseline_only:
        exe = ferry[0] if os.sep in ferry[0] else shutil.which(ferry[0])
        if not exe or not os.path.isfile(exe):
            print(f"error: ferry executable not found: {ferry[0]!r} (build it with `cargo build --release`, "
                  "or pass --ferry CMD)", file=sys.stderr)
            return 2
        ferry[0] = os.path.abspath(exe)

    import onnx

    mode = "baseline" if args.baseline_only else ("default" if args.opset is None else f"opset{args.opset}")
    if args.optimize and not args.baseline_only:
        mode = "optimize" if args.opset is None else f"optimize-opset{args.opset}"
    expected_path = args.expected or os.path.join(
        EXPECTED_DIR, "roundtrip.txt" if mode == "default" else f"roundtrip-{mode}.txt")
    log_path = os.path.join(args.data, f"roundtrip-{mode}.log")
    json_path = os.path.join(args.data, f"roundtrip-{mode}.json")
    baseline_path = os.path.join(args.data, f"baseline-{onnx.__version__}.json")

    gen_cases.generate(args.data, verbose=not args.quiet)
    cases = discover(args.data, suites, args.filter)
    if not cases:
        print("error: no cases selected", file=sys.stderr)
        return 2

    baseline_cache: dict[str, Any] = {}
    if os.path.exists(baseline_path) and not args.rebaseline:
        try:
            with open(baseline_path) as f:
                baseline_cache = json.load(f).get("cases", {})
        except (OSError, ValueError):
            baseline_cache = {}

    tmp_root = tempfile.mkdtemp(prefix="ferry-roundtrip-")
    opts = {"ferry": ferry, "command": "optimize" if args.optimize else "convert", "opset": args.opset, "timeout": args.timeout, "baseline_only": args.baseline_only,
            "tmp": tmp_root, "keep": os.path.abspath(args.keep_outputs) if args.keep_outputs else None}
    tasks = []
    for key, cdir in cases:
        sha = case_sha(cdir)
        cached = baseline_cache.get(key)
        if cached and (cached.get("sha") != sha or cached.get("logic") != BASELINE_LOGIC_VERSION
                       or cached.get("timeout")):  # timeouts are retried, not trusted
            cached = None
        tasks.append({"key": key, "dir": cdir, "sha": sha, "baseline": cached, "opts": opts})
    # longest first (known durations, else bigger models), so the tail is short
    tasks.sort(key=lambda t: (-(t["baseline"] or {}).get("seconds", 0.0),
                              -os.path.getsize(os.path.join(t["dir"], "model.onnx"))))
    sha_of = {t["key"]: t["sha"] for t in tasks}

    results: dict[str, dict[str, Any]] = {}
    new_baselines = 0
    t_start = time.monotonic()
    n_total = len(tasks)
    step = max(1, n_total // 20)
    is_tty = sys.stderr.isatty()

    def on_result(res: dict[str, Any]) -> None:
        nonlocal new_baselines
        key = res["key"]
        nb = res.pop("new_baseline", None)
        if nb is not None:
            baseline_cache[key] = {**nb, "sha": sha_of[key]}
            new_baselines += 1
        elif res.get("died_in") == "baseline":
            # the reference evaluator crashed the worker / hung on the original model
            if res.get("stage") == "harness":  # deterministic enough to cache; hangs are retried
                baseline_cache[key] = {"logic": BASELINE_LOGIC_VERSION, "ok": False, "sha": sha_of[key],
                                       "reason": res["reason"], "seconds": res.get("seconds", 0)}
            if args.baseline_only:
                res.update(stage="baseline")
            else:
                res.update(status="skip", stage=None,
                           reason="reference evaluator fails the original: " + res["reason"])
        results[key] = res
        if res.get("stage") in ("crash", "timeout") and res.get("status") == "fail":
            print(f"!!! {res['stage'].upper()}: {key}: {res['reason']}", flush=True)
        done = len(results)
        if not args.quiet and (done % step == 0 or done == n_total) and (is_tty or done == n_total or done % (step * 5) == 0):
            c = Counter(r["status"] for r in results.values())
            print(f"[{done}/{n_total}] {c['pass']} passed, {c['fail']} failed, {c['skip']} skipped "
                  f"({time.monotonic() - t_start:.0f}s)", file=sys.stderr, flush=True)

    hard_limit = 4 * args.timeout + 60
    interrupted = False
    try:
        run_all(tasks, args.jobs, hard_limit, on_result)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted; saving partial results", file=sys.stderr)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
        if new_baselines:
            # merge with whatever is on disk now (another run may have added entries)
            on_disk: dict[str, Any] = {}
            if os.path.exists(baseline_path):
                try:
                    with open(baseline_path) as f:
                        on_disk = json.load(f).get("cases", {})
                except (OSError, ValueError):
                    pass
            on_disk.update({k: v for k, v in baseline_cache.items() if k in sha_of})
            write_atomic(baseline_path, json.dumps({"onnx": onnx.__version__, "cases": on_disk},
                                                   indent=0, sort_keys=True) + "\n")
    elapsed = time.monotonic() - t_start

    # ---------------------------------------------------------------- report
    keys = sorted(results)
    status = {k: results[k]["status"] for k in keys}
    passed = [k for k in keys if status[k] == "pass"]
    failed = [k for k in keys if status[k] == "fail"]
    skipped = [k for k in keys if status[k] == "skip"]

    failure_lines = [f"{k}\t{results[k]['stage']}\t{results[k].get('reason', '')}" for k in failed]
    header = (f"# ferry round-trip ({mode}); onnx {onnx.__version__}; ferry: {' '.join(ferry)}\n"
              f"# {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped\n"
              "# case\tstage\treason\n")
    write_atomic(log_path, header + "".join(line + "\n" for line in failure_lines))

    print()
    print(f"ferry round-trip, mode {mode}: {' '.join(ferry) if not args.baseline_only else '(baseline only)'}")
    print(f"{'suite':<20}{'cases':>7}{'pass':>7}{'fail':>7}{'skip':>7}")
    for suite in suites:
        ks = [k for k in keys if k.split("/", 1)[0] == suite]
        if ks:
            c = Counter(status[k] for k in ks)
            print(f"{suite:<20}{len(ks):>7}{c['pass']:>7}{c['fail']:>7}{c['skip']:>7}")
    stages = Counter(results[k]["stage"] for k in failed)
    if stages:
        print("failures by stage: " + ", ".join(f"{s}={n}" for s, n in stages.most_common()))
    skip_groups: Counter[str] = Counter()
    for k in skipped:
        r = results[k].get("reason", "")
        if r.startswith("reference evaluator fails the original"):
            r = "reference evaluator fails the original"
        elif r.startswith("original opset"):
            r = f"original opset < {args.opset}"
        skip_groups[r] += 1
    if skip_groups:
        print("skipped: " + "; ".join(f"{r} ({n})" for r, n in skip_groups.most_common()))
    print(f"failure details: {os.path.relpath(log_path)}")

    rc = 0
    crashes = [k for k in failed if results[k]["stage"] in ("crash", "timeout")]
    if crashes:
        print(f"\nCRASHES/HANGS ({len(crashes)}):")
        for k in crashes:
            print(f"  {k}: {results[k]['reason']}")
        if not args.allow_crashes and not args.baseline_only:
            rc = 1

    if not args.baseline_only:
        listed = read_list(expected_path)
        listed_set = set(listed)
        ran = set(keys)
        regressions = [k for k in keys if k in listed_set and status[k] == "fail"]
        listed_skipped = [k for k in keys if k in listed_set and status[k] == "skip"]
        newly = [k for k in passed if k not in listed_set]
        all_known = {k for k, _ in discover(args.data, list(gen_cases.ALL_SUITES), None)}
        stale = sorted(k for k in listed_set if k not in all_known)
        rel_expected = os.path.relpath(expected_path)
        if args.update_expected and not interrupted:
            new_list = sorted((listed_set - ran - set(stale)) | set(passed))
            write_atomic(expected_path, "".join(k + "\n" for k in new_list))
            print(f"\nupdated {rel_expected}: {len(new_list)} cases "
                  f"(+{len(newly)} newly passing, -{len(regressions) + len(listed_skipped)} no longer passing"
                  f"{f', -{len(stale)} stale' if stale else ''})")
        else:
            if regressions:
                print(f"\nREGRESSIONS ({len(regressions)}) -- listed in {rel_expected} but failing:")
                for k in regressions:
                    print(f"  {k}: {results[k]['stage']}: {results[k].get('reason', '')}")
                rc = 1
            if listed_skipped:
                print(f"\nwarning: {len(listed_skipped)} listed case(s) were skipped (not counted): "
                      + ", ".join(listed_skipped[:10]) + (" ..." if len(listed_skipped) > 10 else ""))
            if stale:
                print(f"\nwarning: {len(stale)} listed case(s) do not exist: " + ", ".join(stale[:10]))
            if newly:
                print(f"\nnewly passing ({len(newly)}) (add to the list with --update-expected):")
                for k in newly[:30]:
                    print(f"  {k}")
                if len(newly) > 30:
                    print(f"  ... and {len(newly) - 30} more")
    if interrupted:
        rc = 130

    write_atomic(json_path, json.dumps({
        "mode": mode, "onnx": onnx.__version__, "ferry": ferry, "opset": args.opset,
        "suites": suites, "filter": args.filter, "seconds": round(elapsed, 1), "interrupted": interrupted,
        "counts": {"passed": len(passed), "failed": len(failed), "skipped": len(skipped)},
        "cases": {k: {f: v for f, v in results[k].items() if f not in ("key", "died_in")} for k in keys},
    }, indent=1, sort_keys=True) + "\n")

    print(f"\ntime: {elapsed:.1f}s with -j {args.jobs}; {new_baselines} baseline verdict(s) computed, "
          f"{len(keys) - new_baselines} cached")
    print(f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped")
    return rc


if __name__ == "__main__":
    sys.exit(main())
