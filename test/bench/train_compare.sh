#!/usr/bin/env bash
# Training throughput and peak memory, interleaved rounds on one quiet machine (run by hand; nothing else busy):
#   bash test/bench/train_compare.sh [rounds] [seq] [threads]
# Per round: transformers + peft LoRA in fp32 and in bf16 (test/bench/train_bench.py), the engine's forward+backward
# (train_engine.mjs) and the engine's whole `moe-studio train` step with AdamW (train_cli.mjs), all on
# bench-models/qwen3_moe_bench with r 16 on q/k/v/o + every routed expert. One JSON line each.
# Needs: .venv-ref (TOOLCHAIN.md), bench-models/qwen3_moe_bench (make_bench_model.py) and bench-models/bench_adapter
# (train_bench.py --write-adapter), a built addon and `npm run build:ts`.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-2}; seq=${2:-256}; threads=${3:-2}
for r in $(seq 1 "$rounds"); do
  echo "# round $r  $(date -u +%H:%M:%S)"
  .venv-ref/bin/python test/bench/train_bench.py --threads "$threads" --seq "$seq" --dtype f32 --steps 3
  .venv-ref/bin/python test/bench/train_bench.py --threads "$threads" --seq "$seq" --dtype bf16 --steps 3
  node test/bench/train_engine.mjs bench-models/qwen3_moe_bench bench-models/bench_adapter "$threads" "$seq" 3
  node test/bench/train_cli.mjs bench-models/qwen3_moe_bench "$threads" "$seq" 4 16
done
