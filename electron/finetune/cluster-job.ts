// The cluster hand-off: a run too big for this machine (Hunyuan-Large wants 8-16 GPUs) goes to an existing
// distributed trainer instead of a pretend one here. export-job writes a folder LLaMA-Factory runs as it is:
//
//   data/<dataset>.jsonl       the dataset in the OpenAI messages form (LLaMA-Factory's sharegpt with openai tags)
//   data/dataset_info.json     its registration (file_name, formatting, columns, tags: data/README.md's schema)
//   train_lora.yaml            the user's run mirrored: LoRA rank / alpha / dropout / targets, learning rate and
//                              schedule, warmup, epochs or steps, batch and accumulation, max_seq_length, seed, saves
//   ds_z3_config.json          DeepSpeed ZeRO-3 with "auto" values (the HF Trainer fills them from the yaml)
//   README.md                  torchrun / multi-node commands, and how the adapter comes back
//   moe-studio-job.json        what was mirrored, what could not be, and the local base (for import-adapter)
//
// The data is what our trainer would see: a conversation without a system message gets the default system prompt
// (train/data.ts renders with it), and one LLaMA-Factory would skip (roles out of turn, no final reply) is left out
// here with a count, so both sides train on the same conversations. Written to a temporary folder and renamed.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { stringify } from "yaml";
import { DEFAULT_SYSTEM_PROMPT, type ChatMessage } from "../text/chat-template.js";
import { DEFAULTS, type TrainArgs } from "../train/config.js";

export interface ClusterJobInput {
  args: TrainArgs;
  conversations: ChatMessage[][];
  /** The local model folder the run is for (its config.json picks the template; import-adapter uses it). */
  modelDir: string;
  /** model_name_or_path on the cluster (a hub id or a path there); default: config.json's _name_or_path, else the folder's name. */
  base?: string;
  /** LLaMA-Factory's chat template; default: chosen from the model's architecture. */
  template?: string;
  baseQuant: "none" | "nf4";
  /** The dataset's and the run's name (letters, digits, - and _). */
  name: string;
  outDir: string;
  force?: boolean;
}

export interface ClusterJobResult {
  dir: string;
  conversations: number;
  /** Left out: LLaMA-Factory would skip them (see skipReason). */
  skipped: number;
  firstSkip: string | null;
  template: string;
  base: string;
  /** Knobs of the run LLaMA-Factory has no equivalent for (named in the README and the job file). */
  notMirrored: string[];
}

/** LLaMA-Factory's template for an architecture (its names: data/template.py); cfg is the model's config.json. */
export function templateFor(modelDir: string, cfg: Record<string, unknown>, conversations: ChatMessage[][]): string {
  const type = String(cfg.model_type ?? "");
  const thinks = conversations.some((c) => c.some((m) => m.role === "assistant" && m.content.includes("<think>")));
  if (type === "qwen3" || type === "qwen3_moe") return thinks ? "qwen3" : "qwen3_nothink";
  if (type.startsWith("qwen2")) return "qwen";
  if (type === "mixtral" || type === "mistral") return "mistral";
  if (type.startsWith("hunyuan")) return "hunyuan";
  if (type === "olmoe" || type.startsWith("olmo")) return "olmo";
  if (type === "llama") {
    const tok = readJson(join(modelDir, "tokenizer_config.json")) ?? {};
    return JSON.stringify(tok).includes("<|eot_id|>") ? "llama3" : "llama2";
  }
  return "default";
}

function readJson(path: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** Why LLaMA-Factory's sharegpt converter would skip a conversation (null: it takes it). */
export function skipReason(messages: readonly ChatMessage[]): string | null {
  const rest = messages[0]?.role === "system" ? messages.slice(1) : messages;
  for (const [i, m] of rest.entries()) {
    const want = i % 2 === 0 ? "user" : "assistant";
    if (m.role !== want) return `message ${i + 1 + (rest === messages ? 0 : 1)} is ${m.role}, where LLaMA-Factory expects ${want} (turns must alternate user, assistant)`;
  }
  if (rest.length === 0 || rest.length % 2 !== 0) return "it does not end with an assistant reply";
  return null;
}

/** The run's arguments as LLaMA-Factory's (train_lora.yaml), and the knobs that have no counterpart there. */
export function llamaFactoryConfig(a: TrainArgs, o: { base: string; template: string; dataset: string; name: string; baseQuant: "none" | "nf4" }): { config: Record<string, unknown>; notMirrored: string[] } {
  const notMirrored: string[] = [];
  const scale = a.expert_lr_scale;
  if (scale.routed !== 1 || scale.shared !== 1 || scale.attention !== 1) notMirrored.push(`expert_lr_scale ${JSON.stringify(scale)} (LLaMA-Factory has one learning rate for every LoRA tensor)`);
  if (a.validation_file) notMirrored.push(`validation_file ${a.validation_file} (register it in dataset_info.json and set eval_dataset to use it)`);
  const schedule: Record<string, unknown> = a.lr_scheduler_type === "cosine_with_min_lr"
    ? { lr_scheduler_type: "cosine_with_min_lr", lr_scheduler_kwargs: { min_lr: a.min_lr } }
    : { lr_scheduler_type: a.lr_scheduler_type };
  const config: Record<string, unknown> = {
    // model
    model_name_or_path: o.base,
    trust_remote_code: true,
    ...(o.baseQuant === "nf4" ? { quantization_bit: 4, quantization_method: "bnb" } : {}),
    // method
    stage: "sft",
    do_train: true,
    finetuning_type: "lora",
    lora_rank: a.lora_rank,
    lora_alpha: a.lora_alpha,
    lora_dropout: a.lora_dropout,
    lora_target: a.target_modules.join(","),
    ...(a.use_rslora ? { use_rslora: true } : {}),
    deepspeed: "ds_z3_config.json",
    // dataset
    dataset: o.dataset,
    dataset_dir: "data",
    template: o.template,
    cutoff_len: a.max_seq_length,
    // loss on the replies only (ours: loss_on "assistant"), or on every token
    ...(a.loss_on === "all" ? { train_on_prompt: true } : {}),
    preprocessing_num_workers: 16,
    // output
    output_dir: `saves/${o.name}`,
    logging_steps: 10,
    save_steps: a.save_steps > 0 ? a.save_steps : 500,
    plot_loss: true,
    report_to: "none",
    // train
    per_device_train_batch_size: a.per_device_train_batch_size,
    gradient_accumulation_steps: a.gradient_accumulation_steps,
    learning_rate: a.learning_rate,
    ...schedule,
    ...(a.warmup_steps !== undefined ? { warmup_steps: a.warmup_steps } : { warmup_ratio: a.warmup_ratio ?? 0 }),
    ...(a.max_steps !== undefined ? { max_steps: a.max_steps } : { num_train_epochs: a.num_train_epochs ?? DEFAULTS.num_train_epochs }),
    weight_decay: a.weight_decay,
    max_grad_norm: a.max_grad_norm,
    seed: a.seed,
    bf16: true,
    ddp_timeout: 180000000,
    // eval: the same share held out
    ...(a.validation_split ? { val_size: a.validation_split, per_device_eval_batch_size: a.per_device_train_batch_size, eval_strategy: "steps", eval_steps: a.eval_steps > 0 ? a.eval_steps : 500 } : {}),
  };
  return { config, notMirrored };
}

/** DeepSpeed ZeRO-3: parameters, gradients and optimizer state sharded over every GPU; "auto" comes from the yaml. */
export const DS_ZERO3 = {
  train_batch_size: "auto",
  train_micro_batch_size_per_gpu: "auto",
  gradient_accumulation_steps: "auto",
  gradient_clipping: "auto",
  zero_allow_untested_optimizer: true,
  bf16: { enabled: "auto" },
  fp16: { enabled: "auto", loss_scale: 0, loss_scale_window: 1000, initial_scale_power: 16, hysteresis: 2, min_loss_scale: 1 },
  zero_optimization: {
    stage: 3,
    overlap_comm: false,
    contiguous_gradients: true,
    sub_group_size: 1e9,
    reduce_bucket_size: "auto",
    stage3_prefetch_bucket_size: "auto",
    stage3_param_persistence_threshold: "auto",
    stage3_max_live_parameters: 1e9,
    stage3_max_reuse_distance: 1e9,
    // the adapter is saved whole, not as shards: what PEFT (and import-adapter) read
    stage3_gather_16bit_weights_on_model_save: true,
  },
};

/** The sharegpt/openai registration of the jsonl (LLaMA-Factory data/README.md, "OpenAI Format"). */
export function datasetInfo(dataset: string, file: string): Record<string, unknown> {
  return {
    [dataset]: {
      file_name: file,
      formatting: "sharegpt",
      columns: { messages: "messages" },
      tags: { role_tag: "role", content_tag: "content", user_tag: "user", assistant_tag: "assistant", system_tag: "system" },
    },
  };
}

function readme(r: { name: string; dataset: string; base: string; template: string; conversations: number; skipped: number; notMirrored: string[]; modelDir: string; quant: boolean }): string {
  return `# ${r.name}: a LoRA run for LLaMA-Factory

Made by MoE Studio (\`moe-studio export-job\`) from dataset \`${r.dataset}\` (${r.conversations} conversations${r.skipped ? `; ${r.skipped} left out, which LLaMA-Factory would skip` : ""}) and the run's settings, for
\`${r.base}\` with LLaMA-Factory's \`${r.template}\` template${r.quant ? " (Q-LoRA: the base in 4-bit with bitsandbytes)" : ""}.
Check \`model_name_or_path\` in train_lora.yaml: it must be where the cluster has the weights (a hub id or a path there).

## Run it

On one machine with several GPUs (LLaMA-Factory installed, from this folder):

    FORCE_TORCHRUN=1 llamafactory-cli train train_lora.yaml

On several machines (run on each, NODE_RANK 0 on the one at MASTER_ADDR):

    FORCE_TORCHRUN=1 NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 llamafactory-cli train train_lora.yaml
    FORCE_TORCHRUN=1 NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 llamafactory-cli train train_lora.yaml

or with torchrun itself (from a LLaMA-Factory checkout; 8 GPUs per node):

    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --master_addr 10.0.0.1 --master_port 29500 \\
      /path/to/LLaMA-Factory/src/train.py $(pwd)/train_lora.yaml

DeepSpeed ZeRO-3 (ds_z3_config.json) shards the model over every GPU.${r.quant ? " With 4-bit bases LLaMA-Factory may ask for ZeRO-2 or FSDP instead; its docs say which." : ""}

## Bring the adapter back

The run writes a PEFT adapter to \`saves/${r.name}/\` (adapter_config.json, adapter_model.safetensors). Copy that
folder to this machine and import it:

    npx moe-studio import-adapter saves/${r.name} --model ${r.modelDir}

(or in the app: Models → "Import an adapter trained elsewhere"). It lands in the app's models folder: Models → "In your models folder" opens it to chat with on its base, and
\`moe-studio export --model BASE --adapter DIR --out MERGED --dtype bf16\` writes merged weights.
${r.notMirrored.length ? `\n## Not mirrored\n\n${r.notMirrored.map((n) => `- ${n}`).join("\n")}\n` : ""}`;
}

/** Writes the job folder (to a temporary name, renamed when complete). */
export function writeClusterJob(input: ClusterJobInput): ClusterJobResult {
  const out = resolve(input.outDir);
  if (existsSync(out) && !input.force) throw new Error(`--out ${out} exists; pick another folder or pass --force to replace it`);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/.test(input.name)) throw new Error(`--name ${JSON.stringify(input.name)}: letters, digits, ".", "_" and "-" only (it names the dataset and saves/<name>)`);
  const cfg = readJson(join(input.modelDir, "config.json"));
  if (!cfg) throw new Error(`${join(input.modelDir, "config.json")}: not found or not JSON (--model must be the model folder the run is for)`);
  const base = input.base ?? (typeof cfg._name_or_path === "string" && cfg._name_or_path ? cfg._name_or_path : basename(resolve(input.modelDir)));

  let skipped = 0;
  let firstSkip: string | null = null;
  const lines: string[] = [];
  input.conversations.forEach((conv, i) => {
    const withSystem = conv[0]?.role === "system" ? conv : [{ role: "system", content: DEFAULT_SYSTEM_PROMPT } as ChatMessage, ...conv];
    const why = skipReason(withSystem);
    if (why) {
      skipped++;
      firstSkip ??= `conversation ${i + 1}: ${why}`;
      return;
    }
    lines.push(JSON.stringify({ messages: withSystem.map((m) => ({ role: m.role, content: m.content })) }));
  });
  if (lines.length === 0) throw new Error(`the dataset has no conversation LLaMA-Factory can train on${firstSkip ? ` (${firstSkip})` : ""}`);
  const template = input.template ?? templateFor(input.modelDir, cfg, input.conversations);
  const dataset = input.name.replace(/[^A-Za-z0-9_]/g, "_");
  const { config, notMirrored } = llamaFactoryConfig(input.args, { base, template, dataset, name: input.name, baseQuant: input.baseQuant });

  const tmp = join(dirname(out), `.${basename(out)}.partial-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, "data"), { recursive: true });
  try {
    writeFileSync(join(tmp, "data", `${dataset}.jsonl`), lines.join("\n") + "\n");
    writeFileSync(join(tmp, "data", "dataset_info.json"), JSON.stringify(datasetInfo(dataset, `${dataset}.jsonl`), null, 2) + "\n");
    writeFileSync(join(tmp, "train_lora.yaml"), `# LLaMA-Factory LoRA SFT, made by MoE Studio (moe-studio export-job): the run's settings mirrored.\n${stringify(config)}`);
    writeFileSync(join(tmp, "ds_z3_config.json"), JSON.stringify(DS_ZERO3, null, 2) + "\n");
    writeFileSync(join(tmp, "README.md"), readme({ name: input.name, dataset, base, template, conversations: lines.length, skipped, notMirrored, modelDir: resolve(input.modelDir), quant: input.baseQuant === "nf4" }));
    writeFileSync(join(tmp, "moe-studio-job.json"), JSON.stringify({ name: input.name, localBase: resolve(input.modelDir), base, template, baseQuant: input.baseQuant,
      conversations: lines.length, skipped, notMirrored, trainArgs: input.args }, null, 2) + "\n");
    if (existsSync(out)) rmSync(out, { recursive: true, force: true });
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { dir: out, conversations: lines.length, skipped, firstSkip, template, base, notMirrored };
}
