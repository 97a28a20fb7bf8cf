#!/usr/bin/env python3
"""transformers' prefill and decode speed on a checkpoint, the baseline for the native engine (run by hand).

    .venv-ref/bin/python test/bench/hf_bench.py [--model bench-models/qwen3_moe_bench] [--threads 2]
        [--prompt-tokens 128] [--gen-tokens 64] [--dtype bf16|f32|both]

prefill tok/s = prompt_tokens / time of one forward over the prompt (with a fresh KV cache)
decode  tok/s = gen_tokens / time of gen_tokens single-token greedy forwards reusing the cache
peak RSS      = ru_maxrss of a child process per dtype (so bf16 and f32 do not mix).
Token ids are random (seeded) in [0, vocab): speed does not depend on the text.
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_one(a):
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(a.threads)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype).eval()
    load_s = time.time() - t0
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (1, a.prompt_tokens), generator=g)
    res = {"dtype": a.dtype, "threads": a.threads, "load_s": round(load_s, 2)}
    with torch.inference_mode():
        # warm-up on a short prompt (first-call overheads: allocator, kernels selection)
        model(ids[:, :8], use_cache=True)
        best_pf = None
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out = model(ids, use_cache=True)
            dt = time.perf_counter() - t0
            best_pf = dt if best_pf is None else min(best_pf, dt)
        past = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        t0 = time.perf_counter()
        for _ in range(a.gen_tokens):
            out = model(nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        dec = time.perf_counter() - t0
    res["prefill_tok_s"] = round(a.prompt_tokens / best_pf, 1)
    res["decode_tok_s"] = round(a.gen_tokens / dec, 2)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)
    print(json.dumps(res), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "bench-models" / "qwen3_moe_bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", default="both", choices=["bf16", "f32", "both"])
    a = ap.parse_args()
    if a.dtype != "both":
        run_one(a)
        return
    for dt in ("bf16", "f32"):  # one child per dtype: a clean peak RSS each
        args = [sys.executable, __file__, "--model", a.model, "--threads", str(a.threads), "--prompt-tokens",
                str(a.prompt_tokens), "--gen-tokens", str(a.gen_tokens), "--repeats", str(a.repeats), "--dtype", dt]
        subprocess.run(args, check=True)


if __name__ == "__main__":
    main()
