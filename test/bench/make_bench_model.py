#!/usr/bin/env python3
"""Write a random ~0.7B-parameter qwen3_moe checkpoint in bf16 for benchmarks (run by hand, never in CI).

    .venv-ref/bin/python test/bench/make_bench_model.py [--out bench-models/qwen3_moe_bench] [--layers 12]

Shape (defaults): hidden 1024, 12 layers, 16 q heads / 4 kv heads of 64, 32 experts of 512 (top-4), vocab 32768.
  experts   12 * 32 * 3 * 1024 * 512  = 604 M
  attention 12 * (2 * 1024*1024 + 2 * 1024*256) = 31 M
  embed + lm_head 2 * 32768 * 1024    = 67 M        total ~ 0.70 B, active per token ~ 0.17 B
The tokenizer (and chat template) are copied from the test fixtures (qwen3_moe, else qwen3, else qwen2_moe); its
vocabulary is smaller than the model's, which is fine for benchmarks that feed token ids. bench-models/ is
gitignored: never commit the output.
"""
import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench-models" / "qwen3_moe_bench"))
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--experts", type=int, default=32)
    ap.add_argument("--topk", type=int, default=4)
    ap.add_argument("--moe-inter", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    src = next((ROOT / "test/fixtures/models" / n for n in ("qwen3_moe", "qwen3", "qwen2_moe")
                if (ROOT / "test/fixtures/models" / n / "tokenizer.json").exists()), None)
    eos = None
    if src is not None:
        for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            if (src / f).exists():
                shutil.copy(src / f, out / f)
        gen = json.loads((src / "config.json").read_text()).get("eos_token_id")
        eos = gen
        print(f"tokenizer copied from {src}")
    else:
        print("no fixture tokenizer found: writing weights only")

    cfg = Qwen3MoeConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=4 * a.hidden,
        num_hidden_layers=a.layers, num_attention_heads=16, num_key_value_heads=4, head_dim=a.hidden // 16,
        num_experts=a.experts, num_experts_per_tok=a.topk, moe_intermediate_size=a.moe_inter,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], max_position_embeddings=4096,
        rms_norm_eps=1e-6, tie_word_embeddings=False, eos_token_id=eos, pad_token_id=None,
        initializer_range=0.02)
    torch.manual_seed(a.seed)
    t0 = time.time()
    model = Qwen3MoeForCausalLM(cfg).to(torch.bfloat16).eval()
    n_total = sum(p.numel() for p in model.parameters())
    per_expert = 3 * a.hidden * a.moe_inter
    n_active = n_total - a.layers * (a.experts - a.topk) * per_expert
    print(f"params: total {n_total / 1e6:.1f} M, active per token {n_active / 1e6:.1f} M  (init {time.time() - t0:.1f} s)")
    model.save_pretrained(out, max_shard_size="1GB")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
