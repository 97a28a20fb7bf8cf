#!/usr/bin/env python3
"""Engine vs transformers on the bench checkpoint, as a markdown table (run by hand; needs the built addon and
.venv-ref). Each configuration runs --runs times, interleaved; the table shows the median (and min-max),
because the machine is shared and single runs are noisy.

    .venv-ref/bin/python test/bench/compare.py [--model bench-models/qwen3_moe_bench] [--threads 2] [--runs 3]

Engine figures come from `moe-studio bench` (electron/bin/moe-studio.mjs; MOE_STUDIO_ADDON selects another
build, MOE_SIMD another SIMD path), transformers figures from test/bench/hf_bench.py (one process per run).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def engine_run(a, simd=None):
    env = dict(os.environ)
    if simd:
        env["MOE_SIMD"] = simd
    out = subprocess.run(["node", str(ROOT / "electron/bin/moe-studio.mjs"), "bench", "--model", a.model, "--threads",
                          str(a.threads), "--prompt-tokens", str(a.prompt_tokens), "--gen-tokens", str(a.gen_tokens)],
                         capture_output=True, text=True, env=env, check=True).stdout
    pf = float(re.search(r"prefill: .*= ([\d.]+) tok/s", out).group(1))
    dc = float(re.search(r"decode: .*= ([\d.]+) tok/s", out).group(1))
    rss = float(re.search(r"peak RSS: ([\d.]+) MiB", out).group(1))
    simd_name = re.search(r"simd: (\S+)", out).group(1)
    return {"prefill_tok_s": pf, "decode_tok_s": dc, "peak_rss_mb": rss, "simd": simd_name}


def hf_run(a, dtype):
    out = subprocess.run([sys.executable, str(ROOT / "test/bench/hf_bench.py"), "--model", a.model, "--threads",
                          str(a.threads), "--prompt-tokens", str(a.prompt_tokens), "--gen-tokens", str(a.gen_tokens),
                          "--dtype", dtype], capture_output=True, text=True, check=True).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def fmt(vals, digits=1):
    med = statistics.median(vals)
    return f"{med:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})" if len(vals) > 1 else f"{med:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "bench-models" / "qwen3_moe_bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--engine-simd", default="", help="comma-separated extra MOE_SIMD paths to run, e.g. avx512,avx2")
    a = ap.parse_args()
    configs = [("engine (bf16 weights)", lambda: engine_run(a))]
    for s in filter(None, a.engine_simd.split(",")):
        configs.append((f"engine MOE_SIMD={s}", lambda s=s: engine_run(a, s)))
    configs += [("transformers bf16", lambda: hf_run(a, "bf16")), ("transformers f32", lambda: hf_run(a, "f32"))]
    results = {name: [] for name, _ in configs}
    for r in range(a.runs):
        for name, fn in configs:
            results[name].append(fn())
            print(f"run {r + 1} {name}: {results[name][-1]}", file=sys.stderr, flush=True)
    print(f"\n{a.prompt_tokens}-token prompt, {a.gen_tokens} new tokens, {a.threads} threads, median (min-max) of {a.runs} runs\n")
    print("| | prefill tok/s | decode tok/s | peak RSS MiB |")
    print("|---|---|---|---|")
    for name, _ in configs:
        rs = results[name]
        label = name + (f" [{rs[0]['simd']}]" if "simd" in rs[0] else "")
        print(f"| {label} | {fmt([x['prefill_tok_s'] for x in rs])} | {fmt([x['decode_tok_s'] for x in rs])} | "
              f"{fmt([x['peak_rss_mb'] for x in rs], 0)} |")


if __name__ == "__main__":
    main()
