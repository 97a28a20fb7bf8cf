#!/usr/bin/env python3
"""LoRA training throughput of transformers + peft on the CPU, the baseline for the engine's trainer (run by hand).

    .venv-ref/bin/python test/bench/train_bench.py [--model bench-models/qwen3_moe_bench] [--threads 2]
        [--seq 256] [--r 16] [--steps 3] [--dtype f32|bf16] [--write-adapter DIR]

One step = forward + backward + AdamW on one sequence of --seq random tokens (labels = ids), LoRA r on q/k/v/o
(target_modules) and every routed expert (target_parameters mlp.experts.gate_up_proj / down_proj, lora_dropout 0, as
peft requires for them), experts_implementation "grouped_mm" (transformers' default; "eager" is ~5x slower).
tokens/s = seq / median step time after one warm-up step; peak RSS = ru_maxrss of this process.
--write-adapter saves the initialised adapter (B given small random values so gradients are not trivially zero) as a
PEFT folder: `node test/bench/train_engine.mjs` times the engine on exactly that adapter.
"""
import argparse
import json
import resource
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "bench-models" / "qwen3_moe_bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--write-adapter", default=None)
    a = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, experts_implementation="grouped_mm")
    cfg = LoraConfig(r=a.r, lora_alpha=2 * a.r, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                     target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"])
    model = get_peft_model(model, cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.01)
    if a.write_adapter:
        model.save_pretrained(a.write_adapter)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, a.seq), generator=torch.Generator().manual_seed(0))
    times = []
    for step in range(a.steps + 1):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if step > 0:
            times.append(dt)
    med = statistics.median(times)
    print(json.dumps({"impl": "transformers+peft", "dtype": a.dtype, "threads": a.threads, "seq": a.seq, "r": a.r,
                      "trainable_params": sum(p.numel() for p in params), "step_s": round(med, 3),
                      "tokens_per_s": round(a.seq / med, 2), "loss": round(float(loss), 4),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}), flush=True)


if __name__ == "__main__":
    main()
