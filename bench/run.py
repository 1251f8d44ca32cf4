#!/usr/bin/env python3
"""ferry vs onnxruntime vs tract on the benchmark models (ResNet-50, MobileNetV2, BERT-base seq 128).

Every measurement is one fresh process per engine (`ferry bench --json`, bench/ort_runner.py,
the tract runner), all fed the same <model>.inputs.npz. Engines alternate round by round
(the order rotates each round), so a load spike on a shared machine hits them all alike; each
cell reports the median over rounds of each round's median latency. The load average is recorded
with every process, and so is the process CPU time per run (all threads): on a busy machine wall
time stretches while CPU time mostly does not (but it counts threads that spin while waiting).

  bench/setup.sh                                   # venv, models, tract runner, ferry
  target/bench-venv/bin/python bench/run.py --json target/bench-results.json
  python bench/run.py --models /work/cache/bench-models --threads 1,2 --rounds 3 resnet50

Prints a Markdown table of medians (+ p90, prepare time, peak RSS) and of the ratios
ferry/onnxruntime and ferry/tract (below 1 means ferry is faster / smaller).
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_MODELS = ["resnet50", "mobilenet_v2", "bert_base"]
ALL_ENGINES = ["ferry-optimized", "ferry-reference", "onnxruntime", "tract"]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def default_models_dir():
    env = os.environ.get("BENCH_MODELS")
    if env:
        return env
    return os.path.join(ROOT, "target", "bench-models")


def default_ort_python():
    venv = os.path.join(ROOT, "target", "bench-venv", "bin", "python")
    return venv if os.path.exists(venv) else sys.executable


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=ALL_MODELS, help=f"models to time (default: {' '.join(ALL_MODELS)})")
    ap.add_argument("--models", dest="models_dir", default=default_models_dir(),
                    help="folder with <model>.onnx and <model>.inputs.npz (default: $BENCH_MODELS or target/bench-models)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each runs every engine once (default 3)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per process (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs per process (default 2)")
    ap.add_argument("--slow-runs", type=int, default=2,
                    help="timed runs for ferry's reference path, which is far slower: it runs in the first "
                         "round only, at the first thread count, with no warm-up (default 2)")
    ap.add_argument("--engines", default=",".join(ALL_ENGINES), help=f"comma-separated subset of {','.join(ALL_ENGINES)}")
    ap.add_argument("--ferry", default=os.path.join(ROOT, "target", "release", "ferry"))
    ap.add_argument("--tract", default=os.path.join(ROOT, "target", "tract-runner", "release", "ferry-bench-tract-runner"))
    ap.add_argument("--ort-python", default=default_ort_python(), help="Python with onnxruntime 1.32 (target/bench-venv)")
    ap.add_argument("--max-seconds", type=float, default=60,
                    help="per process: budget for the warm-up runs and again for the timed runs; an engine "
                         "stops early once its runs took this long (at least one of each; default 60)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one process may take (default 900)")
    ap.add_argument("--json", dest="json_out", help="write all results here (temp file + rename)")
    ap.add_argument("--from-json", help="measure nothing: print the tables of a results file written by --json")
    a = ap.parse_args()
    a.threads = [int(t) for t in a.threads.split(",") if t.strip()]
    a.engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    bad = [e for e in a.engines if e not in ALL_ENGINES]
    if bad or not a.engines:
        ap.error(f"unknown engine(s) {bad}; choose from {ALL_ENGINES}")
    if a.rounds < 1 or a.runs < 1 or a.slow_runs < 1 or a.warmup < 0 or not a.threads or min(a.threads) < 1:
        ap.error("--rounds, --runs, --slow-runs and every --threads value must be at least 1")
    return a


def machine():
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "loadavg_start": os.getloadavg(), "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        for key, name in [("Model name", "cpu_model"), ("CPU family", "cpu_family"), ("Model", "cpu_model_id"), ("CPU(s)", "cpus"), ("Thread(s) per core", "threads_per_core"),
                          ("Hypervisor vendor", "hypervisor"), ("L2 cache", "l2"), ("L3 cache", "l3")]:
            if key in fields:
                info[name] = fields[key].strip()
    except (OSError, subprocess.SubprocessError):
        info["cpu_model"] = "unknown (no lscpu)"
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        info["simd"] = [x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni") if x in flags]
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout
        info["ferry_commit"] = rev.strip() + ("-dirty" if dirty.strip() else "")
    except OSError:
        pass
    lock = os.path.join(ROOT, "bench", "tract-runner", "Cargo.lock")
    if os.path.exists(lock):
        m = re.search(r'name = "tract-onnx"\nversion = "([^"]+)"', open(lock).read())
        if m:
            info["tract_version"] = m.group(1)
    return info


def command(a, engine, model, npz, threads):
    budget = ["--max-seconds", str(a.max_seconds)]
    if engine.startswith("ferry-"):
        path = engine.split("-", 1)[1]
        slow = path == "reference"
        return [a.ferry, "bench", model, "--inputs", npz, "--path", path, "--threads", str(threads),
                "--runs", str(a.slow_runs if slow else a.runs), "--warmup", str(0 if slow else a.warmup), "--json"] + budget
    if engine == "onnxruntime":
        return [a.ort_python, os.path.join(ROOT, "bench", "ort_runner.py"), model, "--inputs", npz,
                "--threads", str(threads), "--runs", str(a.runs), "--warmup", str(a.warmup)] + budget
    return [a.tract, model, "--inputs", npz, "--threads", str(threads), "--runs", str(a.runs),
            "--warmup", str(a.warmup)] + budget


def measure(a, engine, name, model, npz, threads, rnd):
    """One fresh process; returns its record (the report, or the error)."""
    cmd = command(a, engine, model, npz, threads)
    rec = {"model": name, "engine": engine, "threads": threads, "round": rnd, "loadavg_before": os.getloadavg()[0]}
    started = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    except subprocess.TimeoutExpired:
        rec["error"] = f"timed out after {a.timeout:.0f} s"
        return rec
    except OSError as e:
        rec["error"] = f"cannot start {cmd[0]}: {e}"
        return rec
    rec["wall_s"] = round(time.time() - started, 2)
    rec["loadavg_after"] = os.getloadavg()[0]
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        rec["error"] = f"exit {p.returncode}: " + (p.stderr.strip().splitlines() or ["no message"])[-1][:400]
        return rec
    try:
        rec["report"] = json.loads(lines[-1])
    except json.JSONDecodeError:
        rec["error"] = "last stdout line is not JSON: " + lines[-1][:200]
    return rec


def summarize(records):
    """(model, threads, engine) -> summary over the rounds that succeeded."""
    cells = {}
    for r in records:
        key = (r["model"], r["threads"], r["engine"])
        cells.setdefault(key, []).append(r)
    out = {}
    for key, rs in cells.items():
        ok = [r["report"] for r in rs if "report" in r]
        s = {"rounds": len(rs), "ok": len(ok), "loadavg": [r["loadavg_before"] for r in rs]}
        if not ok:
            s["error"] = next(r["error"] for r in rs if "error" in r)
        else:
            rss = [o["peak_rss_mb"] for o in ok if o.get("peak_rss_mb") is not None]
            cpu = [o["cpu_ms_per_run"] for o in ok if o.get("cpu_ms_per_run") is not None]
            s.update({
                "median_ms": statistics.median(o["latency_ms"]["median"] for o in ok),
                "p90_ms": statistics.median(o["latency_ms"]["p90"] for o in ok),
                "min_ms": min(o["latency_ms"]["min"] for o in ok),
                "round_medians_ms": [round(o["latency_ms"]["median"], 3) for o in ok],
                "cpu_ms": statistics.median(cpu) if cpu else None,
                "prepare_ms": statistics.median(o["prepare_ms"] for o in ok),
                "first_run_ms": statistics.median(o.get("first_run_ms") or 0.0 for o in ok),
                # A cold start: what a fresh process pays before it has its first result.
                "cold_ms": statistics.median(o["prepare_ms"] + (o.get("first_run_ms") or 0.0) for o in ok),
                "peak_rss_mb": max(rss) if rss else None,
                "threads_used": ok[0].get("threads"),
                "runs": [o.get("runs") for o in ok],
            })
        out[key] = s
    return out


def fmt(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def tables(summary, models, threads, engines):
    lines = ["| model | threads | engine | median ms | p90 ms | min ms | CPU ms/run | prepare ms | 1st run ms | peak RSS MB | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        for t in threads:
            for e in engines:
                s = summary.get((m, t, e))
                if s is None:
                    continue
                load = fmt(statistics.mean(s["loadavg"]), 2)
                if "error" in s:
                    lines.append(f"| {m} | {t} | {e} | failed: {s['error'][:80]} | | | | | | | {load} |")
                    continue
                label = e if s["threads_used"] in (None, t) else f"{e} (runs on {s['threads_used']})"
                lines.append(f"| {m} | {t} | {label} | {fmt(s['median_ms'], 2)} | {fmt(s['p90_ms'], 2)} | "
                             f"{fmt(s['min_ms'], 2)} | {fmt(s['cpu_ms'], 2)} | {fmt(s['prepare_ms'])} | {fmt(s['first_run_ms'])} | {fmt(s['peak_rss_mb'])} | {load} |")
    lines += ["", "Ratios (ferry / other; below 1: ferry faster or smaller):", "",
              "| model | threads | ferry path | median / ORT | median / tract | CPU / ORT | CPU / tract | "
              "prepare / ORT | prepare / tract | prepare+1st run / ORT | prepare+1st run / tract | RSS / ORT | "
              "RSS / tract |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        for t in threads:
            ort, tr = summary.get((m, t, "onnxruntime"), {}), summary.get((m, t, "tract"), {})
            for e in ("ferry-optimized", "ferry-reference"):
                f = summary.get((m, t, e))
                if not f or "error" in f:
                    continue
                cols = []
                for k in ("median_ms", "cpu_ms", "prepare_ms", "cold_ms", "peak_rss_mb"):
                    cols += [fmt(ratio(f.get(k), ort.get(k)), 2), fmt(ratio(f.get(k), tr.get(k)), 2)]
                path = e.split("-")[1] + ("" if f["threads_used"] in (None, t) else f" ({f['threads_used']} thread)")
                lines.append(f"| {m} | {t} | {path} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def write_json(path, data):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".bench-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a results file is for reading
    os.replace(tmp, path)


def print_report(info, config, records):
    summary = summarize(records)
    table = tables(summary, config["models"], config["threads"], config["engines"])
    print(f"Machine: {info.get('cpu_model')} (family {info.get('cpu_family')} model {info.get('cpu_model_id')}, "
          f"{info.get('hypervisor') or 'no'} hypervisor, SIMD {' '.join(info.get('simd', []))}), "
          f"{info.get('cpus')} CPUs, {info.get('platform')}; "
          f"load average {info['loadavg_start'][0]:.2f} at start, {info['loadavg_end'][0]:.2f} at end; "
          f"ferry {info.get('ferry_commit')}, tract {info.get('tract_version')}; {info.get('date_utc')} UTC")
    print(f"{config['rounds']} rounds x up to {config['runs']} runs ({config['warmup']} warm-up, at most "
          f"{config.get('max_seconds')} s of each) per engine; ferry reference: {config['slow_runs']} runs "
          f"(no warm-up), first round only. Medians over rounds of each round's median.\n")
    print(table)
    return summary, table


def main():
    a = parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            saved = json.load(f)
        print_report(saved["machine"], saved["config"], saved["records"])
        return
    for m in a.models:
        for ext in (".onnx", ".inputs.npz"):
            p = os.path.join(a.models_dir, m + ext)
            if not os.path.exists(p):
                sys.exit(f"run.py: missing {p}; run bench/setup.sh (or pass --models DIR)")
    engines = list(a.engines)
    if any(e.startswith("ferry") for e in engines) and not os.access(a.ferry, os.X_OK):
        sys.exit(f"run.py: no ferry binary at {a.ferry}; cargo build --release -p ferry-cli")
    if "tract" in engines and not os.access(a.tract, os.X_OK):
        log(f"no tract runner at {a.tract} (bench/setup.sh builds it); leaving tract out")
        engines.remove("tract")
    info = machine()
    log(f"machine: {info.get('cpu_model')} x{info.get('cpus')}, load {info['loadavg_start']}")

    records, skip = [], set()
    for m in a.models:
        model, npz = os.path.join(a.models_dir, m + ".onnx"), os.path.join(a.models_dir, m + ".inputs.npz")
        for t in a.threads:
            for rnd in range(a.rounds):
                order = engines[rnd % len(engines):] + engines[:rnd % len(engines)]
                for e in order:
                    if (m, e) in skip:
                        continue
                    if e == "ferry-reference" and (t != a.threads[0] or rnd > 0):
                        continue  # single-threaded and slow: measured once, at the first thread count
                    rec = measure(a, e, m, model, npz, t, rnd)
                    records.append(rec)
                    if "error" in rec:
                        log(f"{m} t={t} round {rnd + 1} {e}: FAILED {rec['error']}")
                        skip.add((m, e))  # an engine that cannot run a model will not on the next round
                    else:
                        r = rec["report"]
                        log(f"{m} t={t} round {rnd + 1} {e}: median {r['latency_ms']['median']:.2f} ms, "
                            f"prepare {r['prepare_ms']:.0f} ms, rss {fmt(r.get('peak_rss_mb'))} MB "
                            f"(load {rec['loadavg_before']:.2f})")
    # The reference path's figures stand for every thread count (it uses one thread).
    for r in [r for r in records if r["engine"] == "ferry-reference"]:
        for t in a.threads[1:]:
            records.append(dict(r, threads=t, reused_from_threads=a.threads[0]))

    info["loadavg_end"] = os.getloadavg()
    config = {k: v for k, v in vars(a).items() if k not in ("json_out", "from_json")}
    summary, table = print_report(info, config, records)
    if a.json_out:
        write_json(a.json_out, {"machine": info, "config": config, "records": records,
                                "summary": [dict(zip(("model", "threads", "engine"), k), **v) for k, v in summary.items()],
                                "table_markdown": table})
        log(f"wrote {a.json_out}")


if __name__ == "__main__":
    main()
