// `moe-studio <command>`: the engine from a terminal. electron/bin/moe-studio.mjs calls main(argv).
// Errors print one line on stderr and return exit code 1 (no stack traces: the messages name the file/field).
import { existsSync, statSync } from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import { createInterface } from "node:readline";
import { loadAddon, parseDevice, type DeviceKind, type KvCacheType } from "./engine/addon.js";
import { APP_KV_CACHE, given, parseKvCache, type EngineOptions } from "./engine/load-options.js";
import { checkApiKey, DEFAULT_API_PORT, isLoopback } from "./server/openai/http.js";
import { loadModel, type ChatMessage, type GenerateOptions, type LoadedModel } from "./engine/engine.js";
import { cmdDataset, DATASET_HELP } from "./cli/dataset.js";

const HELP = `moe-studio — run Hugging Face Mixture-of-Experts models on your own machine

Usage: moe-studio <command> [options]

Commands:
  generate --model DIR (--prompt TEXT [--system TEXT] | --ids 1,2,3) [--max-tokens N] [--temperature T]
           [--top-p P] [--top-k K] [--repetition-penalty R] [--seed S] [--stop TEXT] [--threads N] [--json]
      Generate a reply. --prompt applies the model's chat template (default system prompt
      "You are a helpful assistant."); --ids feeds raw token ids. --json prints {"ids":[...],"text":"..."}.
  logits --model DIR --ids 1,2,3 [--threads N]
      Print {"logits": [[...], ...]}: one row of vocab-size floats per input position (a single prefill).
  chat --model DIR [--system TEXT] [--max-tokens N] [--temperature T] [--seed S] [--threads N]
      Interactive chat that streams tokens. /exit quits, /reset forgets the conversation,
      Ctrl-C stops the reply (at the prompt it quits).
  bench --model DIR [--prompt-tokens N] [--gen-tokens N] [--threads N]
      Prefill and decode tokens/s and peak memory (default 128 prompt tokens, 64 generated).
  train --model DIR (--data FILE.jsonl | --dataset ID [--db PATH]) --out RUN_DIR [--config train.json] [--resume RUN_DIR]
        [--base-quant none|nf4] [--device D] [--threads N] [--progress] [--estimate]
      LoRA finetuning (train.json: transformers/peft knob names, or {"preset": "hunyuan_lora"}). One JSON line per
      step on stdout; RUN_DIR/checkpoint-<step>/ and RUN_DIR/final/ are PEFT adapter folders (load with --adapter).
      --resume continues the run bit-identically; Ctrl-C saves a checkpoint and exits 130. --estimate: one JSON line
      with the memory the run needs (fits true/false) and exit 0, nothing trained.
  quantize --model DIR --bits 8|4 [--format q8_0|q4_0|q4_k] [--embeddings keep|q8_0|q4_0|q4_k] --out DIR2 [--threads N]
      Write a quantized copy of a model folder (GGUF block formats; --bits 4 defaults to q4_k, embeddings and
      lm_head default to q8_0; routers, norms and biases stay float). Written to a temporary folder beside DIR2
      and renamed when complete; Ctrl-C cancels and leaves nothing.
  export-gguf --model DIR --type f16|q8_0|q4_0|q4_k --out FILE.gguf [--force] [--json]
      Write a GGUF v3 file llama.cpp (Ollama, LM Studio, Jan) loads: llama.cpp's tensor names and metadata, the
      tokenizer and chat template. Norms and routers stay f32; with q4_* the embeddings and output stay Q8_0.
      An existing FILE is refused unless --force. Ctrl-C cancels; nothing partial is left behind.
  export --model DIR --adapter DIR --out DIR2 --dtype bf16|fp16|fp32 [--quantize q8_0|q4_0|q4_k] [--gguf TYPE]
         [--shard-size 5GB] [--force] [--json]
      Fold a PEFT LoRA adapter into the base weights (W + scaling·B·A from the original checkpoint, rounded once to
      --dtype) and write a Hugging Face folder transformers, vLLM and llama.cpp's converter load: safetensors
      shards (save_pretrained's 5 GB default) + index, routed experts per expert, config.json with the dtype,
      tokenizer, chat template and generation config. --quantize writes the quantized folder of the merged weights
      instead; --gguf TYPE makes --out the FILE.gguf of the merged weights. An existing --out is refused unless
      --force; Ctrl-C cancels and leaves nothing.
  export-job --model DIR (--dataset ID [--db FILE] | --data FILE.jsonl) [--config train.json] --out DIR [--name N]
             [--base NAME] [--template T] [--base-quant nf4] [--force] [--json]
      A folder for a cluster's LLaMA-Factory mirroring the run: data/<name>.jsonl with its dataset_info.json, a
      train_lora.yaml (LoRA rank/alpha/dropout/targets, learning rate and schedule, warmup, epochs or steps, batch,
      accumulation, max_seq_length, seed), a DeepSpeed ZeRO-3 config and a README with the torchrun / multi-node
      commands. --base: model_name_or_path on the cluster (default: config.json's _name_or_path, else the folder's
      name); --template: LLaMA-Factory's chat template (default: from the architecture).
  import-adapter ADAPTER_DIR --model BASE_DIR [--name N] [--dir MODELS_DIR] [--force] [--json]
      Bring back the PEFT adapter a cluster trained: the engine loads BASE_DIR with it (an adapter for another model
      fails here), then it is copied into the models folder with its base recorded (Models opens it to chat).
  serve [--config deploy.yaml] [--port N] [--host H] [--model DIR [--adapter DIR]] [--data DIR] [--allow-dir DIR]...
        [--token T] [--device D [--gpu N]] [--threads N] [--kv-cache T] [--api [--api-port N] [--api-host H] [--api-key KEY]]
      The desktop app's UI for a browser, on 127.0.0.1 only (renderer + WebSocket API; needs
      "npm run build:renderer"). Prints "moe-studio serve: http://127.0.0.1:PORT/?token=..." when ready: open
      that URL (every request needs the token; the page keeps it in a cookie). --port 0 (the default is 8377)
      picks a free port. --model loads a model folder at start (--adapter: with that PEFT adapter applied
      unmerged to every chat that names none); --data is the data folder (default: the desktop
      app's). The browser may name files only under the data folder, the models folder, --model and each
      --allow-dir (repeatable). The token is random unless --token or MOE_STUDIO_TOKEN sets it (at least 16
      of A-Z a-z 0-9 . _ ~ -; the variable keeps it out of the process list). Ctrl-C or SIGTERM stops it.
      --api also serves the OpenAI-compatible API (GET /v1/models, POST /v1/chat/completions and /v1/completions,
      streaming, tool calls, JSON mode; documented at /docs) on --api-port (default 8378; 0: a free port) of
      --api-host (default 127.0.0.1). --api-key KEY (or MOE_STUDIO_API_KEY) makes every request need
      "Authorization: Bearer KEY"; without one, any program on this machine may use it, and --api-host other
      than 127.0.0.1 is refused. --host H serves the UI on another address (e.g. 0.0.0.0), which needs --token.
      --gpu N picks the GPU (CUDA_VISIBLE_DEVICES) for --device cuda|auto. --config deploy.yaml reads all of these
      from one file (model, adapter, data_dir, allow_dirs, device, gpu, threads, kv_cache, web_host, web_port, web_token, api,
      api_host, api_port, api_key; relative paths from the file's folder); flags on the command line win, and a
      bad field is named with its line.
  pull REPO_ID [--source hf|modelscope] [--endpoint URL] [--dir DIR] [--revision R] [--token T] [--require-checksums]
      Download a model (config, safetensors weights, tokenizer, chat template; nothing else) into
      DIR/<owner>--<name> (default DIR: the desktop app's models folder), verifying every file's checksum;
      a file the hub lists without one is size-checked only and named as such. --require-checksums refuses
      such a model before downloading anything.
      Interrupted downloads resume where they stopped: run the same command again. Honours HF_ENDPOINT
      (e.g. https://hf-mirror.com) and HF_TOKEN (gated models) as huggingface-cli does.
  grad --model DIR --adapter DIR --ids 1,2,3 [--labels l1,l2,...] [--base-quant none|nf4] [--threads N] --json
      One forward + backward with a PEFT LoRA adapter: prints {"loss": x, "n_targets": n, "grads": {"<tensor name in
      adapter_model.safetensors>": [row-major floats]}}. --labels follow transformers (aligned with --ids, -100 is
      ignored, position t predicts labels[t+1]; default: the ids); loss is the mean over counted targets.
${DATASET_HELP}  generate, chat, bench and serve also take --kv-cache f32|f16|int8: f16 (the default, as llama.cpp's) keeps K and V
      as IEEE half (half the memory of f32, and faster decode at long context), f32 as the model computes them, int8
      as int8 with one scale per head and token (about a quarter). serve without it uses the app's setting (f16 unless
      changed in Settings); logits and grad keep f32.
  generate, logits, chat and bench also take --adapter DIR (a PEFT LoRA adapter folder applied unmerged) and
      --base-quant nf4 (the base's projections quantized to NF4 at load, as Q-LoRA trains on).
  generate, logits, chat, bench, grad, train and serve also take --device auto|cpu|cuda|emu: emu runs every op on the
      CUDA kernels under the SIMT emulator on the CPU (slow; how the GPU code is tested without a GPU); cuda is
      refused, saying why, until the CUDA backend runs whole models; auto and the default are cpu.
  --help
      This text.
`;

class UsageError extends Error {}

type Flags = Record<string, string | true>;

const VALUE_FLAGS = new Set([
  "model", "prompt", "system", "ids", "max-tokens", "temperature", "top-p", "top-k", "repetition-penalty", "seed",
  "threads", "prompt-tokens", "gen-tokens", "stop", "min-p", "port", "data",
  "source", "endpoint", "dir", "revision", "token",
  "bits", "format", "embeddings", "out", "kv-cache", "type", "adapter", "labels", "base-quant",
  "dtype", "quantize", "gguf", "shard-size", "config", "resume", "dataset", "db", "device",
  "api-host", "api-port", "api-key", "host", "gpu", "name", "base", "template",
]);
/** Value flags that may be given more than once (parseArgs collects them in `lists`). */
const LIST_FLAGS = new Set(["allow-dir"]);
/** Commands that take one positional argument (pull REPO_ID). */
const TAKES_ARGUMENT = new Set(["pull", "import-adapter"]);
const BOOL_FLAGS = new Set(["json", "help", "force", "require-checksums", "progress", "estimate", "api"]);

export function parseArgs(argv: string[]): { command: string | null; flags: Flags; lists: Record<string, string[]>; args: string[] } {
  let command: string | null = null;
  const flags: Flags = {};
  const lists: Record<string, string[]> = {};
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-h") {
      flags.help = true;
      continue;
    }
    if (a.startsWith("--")) {
      let name = a.slice(2);
      let value: string | undefined;
      const eq = name.indexOf("=");
      if (eq >= 0) {
        value = name.slice(eq + 1);
        name = name.slice(0, eq);
      }
      if (BOOL_FLAGS.has(name)) {
        flags[name] = true;
      } else if (LIST_FLAGS.has(name)) {
        if (value === undefined) {
          if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
          value = argv[++i];
        }
        (lists[name] ??= []).push(value);
      } else if (VALUE_FLAGS.has(name)) {
        if (value === undefined) {
          if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
          value = argv[++i];
        }
        flags[name] = value;
      } else {
        throw new UsageError(`unknown option --${name} (see moe-studio --help)`);
      }
    } else if (command === null) {
      command = a;
    } else if (TAKES_ARGUMENT.has(command) && args.length === 0) {
      args.push(a);
    } else {
      throw new UsageError(`unexpected argument "${a}" (see moe-studio --help)`);
    }
  }
  return { command, flags, lists, args };
}

function str(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === "string" ? v : undefined;
}

function need(flags: Flags, name: string): string {
  const v = str(flags, name);
  if (v === undefined) throw new UsageError(`--${name} is required`);
  return v;
}

function number(flags: Flags, name: string, opts: { int?: boolean; min?: number } = {}): number | undefined {
  const v = str(flags, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || (opts.int && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min)) {
    throw new UsageError(`--${name} must be ${opts.int ? "an integer" : "a number"}${opts.min !== undefined ? ` >= ${opts.min}` : ""}, got "${v}"`);
  }
  return n;
}

export function parseIds(s: string): number[] {
  const parts = s.split(/[,\s]+/).filter((p) => p.length > 0);
  if (parts.length === 0) throw new UsageError("--ids is empty: prompt is empty");
  return parts.map((p) => {
    const n = Number(p);
    if (!/^\d+$/.test(p) || !Number.isSafeInteger(n)) throw new UsageError(`--ids: "${p}" is not a token id`);
    return n;
  });
}

function samplingFlags(flags: Flags): GenerateOptions {
  const o: GenerateOptions = {};
  const set = <K extends keyof GenerateOptions>(k: K, v: GenerateOptions[K] | undefined) => {
    if (v !== undefined) o[k] = v;
  };
  set("maxTokens", number(flags, "max-tokens", { int: true, min: 1 }));
  set("temperature", number(flags, "temperature", { min: 0 }));
  set("topP", number(flags, "top-p", { min: 0 }));
  set("topK", number(flags, "top-k", { int: true, min: 0 }));
  set("minP", number(flags, "min-p", { min: 0 }));
  set("repetitionPenalty", number(flags, "repetition-penalty", { min: 0 }));
  set("seed", number(flags, "seed", { int: true, min: 0 }));
  const stop = str(flags, "stop");
  if (stop !== undefined) o.stop = [stop];
  return o;
}

/** --device, checked (a usage error names the choices). */
function deviceFlag(flags: Flags): DeviceKind | undefined {
  try { return parseDevice(str(flags, "device")); } catch (e) { throw new UsageError((e as Error).message); }
}

/**
 * --threads, --kv-cache and --device: how the engine runs what it loads (generate, chat, bench, serve). kvDefault:
 * the KV cache when --kv-cache is not given (undefined: the engine's, f32).
 */
function engineFlags(flags: Flags, kvDefault?: KvCacheType): EngineOptions {
  let kvCache: KvCacheType | undefined;
  try { kvCache = parseKvCache(str(flags, "kv-cache")) ?? kvDefault; } catch (e) { throw new UsageError((e as Error).message); }
  return given({ threads: number(flags, "threads", { int: true, min: 1 }), kvCache, device: deviceFlag(flags) });
}

async function open(flags: Flags, kvDefault?: KvCacheType): Promise<LoadedModel> {
  const bq = str(flags, "base-quant");
  if (bq !== undefined && bq !== "none" && bq !== "nf4") throw new UsageError(`--base-quant must be none or nf4, got "${bq}"`);
  return loadModel(need(flags, "model"), given({ ...engineFlags(flags, kvDefault), adapter: str(flags, "adapter"), baseQuant: bq as "none" | "nf4" | undefined }));
}

/** --labels: comma-separated token ids or -100 (ignored positions), as transformers' labels. */
function parseLabels(s: string): number[] {
  return s.split(/[,\s]+/).filter((p) => p.length > 0).map((p) => {
    if (p === "-100") return -100;
    const n = Number(p);
    if (!/^\d+$/.test(p) || !Number.isSafeInteger(n)) throw new UsageError(`--labels: "${p}" is not a token id or -100`);
    return n;
  });
}

async function cmdGrad(flags: Flags): Promise<number> {
  need(flags, "adapter");
  const ids = parseIds(need(flags, "ids"));
  const labelsFlag = str(flags, "labels");
  const labels = labelsFlag !== undefined ? parseLabels(labelsFlag) : undefined;
  if (labels && labels.length !== ids.length) throw new UsageError(`--labels has ${labels.length} entries, --ids ${ids.length}`);
  const model = await open(flags);
  try {
    const r = await model.native.grad(ids, labels);
    // Float32 -> JSON via each float's exact double value (shortest repr), so nothing is lost
    const grads = Object.entries(r.grads).map(([k, v]) => `${JSON.stringify(k)}:[${Array.from(v).join(",")}]`).join(",");
    process.stdout.write(`{"loss":${r.loss},"n_targets":${r.nTargets},"grads":{${grads}}}\n`);
    return 0;
  } finally {
    model.close();
  }
}

async function cmdGenerate(flags: Flags): Promise<number> {
  const prompt = str(flags, "prompt");
  const idsFlag = str(flags, "ids");
  if ((prompt === undefined) === (idsFlag === undefined)) throw new UsageError("generate needs exactly one of --prompt or --ids");
  if (prompt !== undefined && prompt.length === 0) throw new UsageError("--prompt: prompt is empty");
  const ids = idsFlag !== undefined ? parseIds(idsFlag) : undefined;
  const opts = samplingFlags(flags);
  const model = await open(flags, APP_KV_CACHE);
  try {
    const session = model.chat();
    let input;
    if (ids) input = { ids };
    else if (model.template) input = [{ role: "user", content: prompt! }] as ChatMessage[];
    else input = { prompt: prompt! };
    const system = str(flags, "system");
    const gen = session.generate(input, { ...opts, ...(system !== undefined ? { systemPrompt: system } : {}) });
    if (flags.json) {
      const r = await gen.result;
      process.stdout.write(JSON.stringify({ ids: r.ids, text: r.text }) + "\n");
    } else {
      for await (const delta of gen) process.stdout.write(delta);
      const r = await gen.result;
      process.stdout.write("\n");
      printStats(r.stats);
    }
    session.dispose();
    return 0;
  } finally {
    model.close();
  }
}

function printStats(s: { promptTokens: number; reusedTokens: number; completionTokens: number; prefillTokensPerSecond: number; decodeTokensPerSecond: number; stopReason: string }) {
  process.stderr.write(
    `[${s.promptTokens} prompt tokens (${s.reusedTokens} reused), ${s.completionTokens} generated, ` +
      `prefill ${s.prefillTokensPerSecond.toFixed(1)} tok/s, decode ${s.decodeTokensPerSecond.toFixed(1)} tok/s, stop: ${s.stopReason}]\n`,
  );
}

async function cmdLogits(flags: Flags): Promise<number> {
  const ids = parseIds(need(flags, "ids"));
  const model = await open(flags);
  try {
    const rows = await model.logits(ids);
    // Float32 -> JSON: each float printed via its exact double value's shortest repr, so nothing is lost.
    const out = rows.map((r) => "[" + Array.from(r).join(",") + "]").join(",");
    process.stdout.write(`{"logits":[${out}]}\n`);
    return 0;
  } finally {
    model.close();
  }
}

async function cmdChat(flags: Flags): Promise<number> {
  const opts = samplingFlags(flags);
  const model = await open(flags, APP_KV_CACHE);
  const system = str(flags, "system");
  const session = model.chat();
  const messages: ChatMessage[] = [];
  const i = model.info;
  process.stdout.write(
    `${i.architecture} (${i.modelType}): ${(i.paramsTotal / 1e6).toFixed(1)}M params, ${(i.paramsActive / 1e6).toFixed(1)}M active, ` +
      `${i.numExperts ? `${i.numExperts} experts top-${i.topK}` : "dense"}, ${i.dtype}, ${i.threads} threads, context ${i.contextLength}\n` +
      `Type a message. /exit quits, /reset starts over, Ctrl-C stops a reply.\n`,
  );
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY ?? false });
  let abort: AbortController | null = null;
  // Ctrl-C: during a reply it stops the reply (the native loop stops within one token); at an idle prompt the
  // first one prints a hint and a second one quits. With a TTY readline reports ^C as its own SIGINT event;
  // without one (piped stdin) the signal reaches the process, so both paths are handled the same way.
  let pendingQuit = false;
  const onInterrupt = () => {
    if (abort) {
      abort.abort();
      return;
    }
    if (pendingQuit) {
      rl.close();
      return;
    }
    pendingQuit = true;
    process.stdout.write("\n(Ctrl-C again or /exit to quit)\n");
    rl.prompt();
  };
  rl.on("SIGINT", onInterrupt);
  process.on("SIGINT", onInterrupt);
  const lines = rl[Symbol.asyncIterator]();
  try {
    for (;;) {
      // (lines typed ahead, e.g. piped stdin, are buffered by the iterator and still answered after EOF)
      rl.setPrompt("> ");
      rl.prompt();
      const next = await lines.next();
      if (next.done) break;
      const line = next.value.trim();
      pendingQuit = false;
      if (line === "") continue;
      if (line === "/exit" || line === "/quit") break;
      if (line === "/reset") {
        messages.length = 0;
        session.reset();
        continue;
      }
      messages.push({ role: "user", content: line });
      abort = new AbortController();
      const input = model.template ? messages : { prompt: line };
      const gen = session.generate(input, { ...opts, signal: abort.signal, ...(system !== undefined ? { systemPrompt: system } : {}) });
      try {
        for await (const delta of gen) process.stdout.write(delta);
        const r = await gen.result;
        process.stdout.write("\n");
        printStats(r.stats);
        messages.push({ role: "assistant", content: r.text });
      } catch (e) {
        messages.pop();
        process.stderr.write(`error: ${(e as Error).message}\n`);
      } finally {
        abort = null;
      }
    }
  } finally {
    process.off("SIGINT", onInterrupt);
    rl.close();
    session.dispose();
    model.close();
  }
  return 0;
}

async function cmdBench(flags: Flags): Promise<number> {
  const promptTokens = number(flags, "prompt-tokens", { int: true, min: 1 }) ?? 128;
  const genTokens = number(flags, "gen-tokens", { int: true, min: 1 }) ?? 64;
  const t0 = performance.now();
  const model = await open(flags, APP_KV_CACHE);
  const loadMs = performance.now() - t0;
  try {
    const i = model.info;
    // A deterministic pseudo-random prompt over the vocabulary (the text does not matter for speed; avoid id 0..2,
    // which are often special).
    const V = i.vocabSize;
    const ids: number[] = [];
    let x = 12345;
    for (let k = 0; k < promptTokens; k++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      ids.push(3 + (x % Math.max(1, V - 3)));
    }
    const session = model.chat({ contextLength: Math.min(i.contextLength, promptTokens + genTokens + 1) });
    // Greedy, no eos: always exactly genTokens new tokens.
    const r = await session.generate({ ids }, { maxTokens: genTokens, temperature: 0, eosIds: [], repetitionPenalty: 1 }).result;
    session.dispose();
    const sys = loadAddon().systemInfo();
    const peak = Math.max(sys.peakRssBytes, process.resourceUsage().maxRSS * 1024);
    const s = r.stats;
    process.stdout.write(
      `model: ${i.architecture} (${i.modelType}) ${(i.paramsTotal / 1e6).toFixed(1)}M params (${(i.paramsActive / 1e6).toFixed(1)}M active), ${i.dtype}, kv cache ${i.kvCache}\n` +
        `backend: ${i.backend}, threads: ${i.threads}, simd: ${sys.simd}\n` +
        `load: ${loadMs.toFixed(0)} ms\n` +
        `prefill: ${s.promptTokens} tokens in ${s.prefillMs.toFixed(1)} ms = ${s.prefillTokensPerSecond.toFixed(2)} tok/s\n` +
        `decode: ${s.completionTokens} tokens in ${s.decodeMs.toFixed(1)} ms = ${s.decodeTokensPerSecond.toFixed(2)} tok/s\n` +
        `peak RSS: ${(peak / (1024 * 1024)).toFixed(1)} MiB\n`,
    );
    return 0;
  } finally {
    model.close();
  }
}

export const DEFAULT_PORT = 8377;
/** The environment variable `serve --api` reads its key from (`--api-key` wins). */
export const API_KEY_ENV = "MOE_STUDIO_API_KEY";

/** serve's --api, --api-host, --api-port, --api-key (null without --api). */
function apiFlags(flags: Flags, env: NodeJS.ProcessEnv): { host: string; port: number; key: string | null } | null {
  const named = ["api-host", "api-port", "api-key"].filter((f) => flags[f] !== undefined);
  if (!flags.api) {
    if (named.length) throw new UsageError(`--${named[0]} needs --api`);
    return null;
  }
  const port = number(flags, "api-port", { int: true, min: 0 }) ?? DEFAULT_API_PORT;
  if (port > 65535) throw new UsageError(`--api-port must be at most 65535, got ${port}`);
  const host = str(flags, "api-host") ?? "127.0.0.1";
  const keyFlag = str(flags, "api-key");
  let key: string | null = null;
  try {
    if (keyFlag !== undefined) key = checkApiKey(keyFlag, "--api-key");
    else if (env[API_KEY_ENV]) key = checkApiKey(env[API_KEY_ENV], API_KEY_ENV);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (!isLoopback(host) && !key) throw new UsageError(`--api-host ${host} needs --api-key KEY (or ${API_KEY_ENV}): any machine that can reach it could use the model`);
  return { host, port, key };
}

async function cmdServe(cliFlags: Flags, cliLists: Record<string, string[]>, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { startServer, MissingRendererError } = await import("./server/server.js");
  const { defaultStaticDir } = await import("./server/static.js");
  const { checkToken, TOKEN_ENV } = await import("./server/auth.js");
  const { defaultDataDir } = await import("./services/paths.js");
  // --config deploy.yaml: the file's fields are flags; those given on the command line win (server/deploy-config.ts)
  let flags = cliFlags;
  let lists = cliLists;
  const configFile = str(cliFlags, "config");
  if (configFile !== undefined) {
    const { readDeployConfig } = await import("./server/deploy-config.js");
    const file = readDeployConfig(resolvePath(configFile));
    const { config: _config, ...given } = cliFlags;
    flags = { ...file.flags, ...given };
    lists = { ...file.lists, ...cliLists };
  }
  const port = number(flags, "port", { int: true, min: 0 }) ?? DEFAULT_PORT;
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
  const model = str(flags, "model");
  const adapter = str(flags, "adapter");
  if (adapter !== undefined && model === undefined) throw new UsageError("--adapter needs --model DIR (the base model the adapter was trained on)");
  if (adapter !== undefined && !existsSync(join(resolvePath(adapter), "adapter_config.json"))) {
    throw new UsageError(`--adapter ${adapter}: not a PEFT adapter folder (${join(resolvePath(adapter), "adapter_config.json")} is missing)`);
  }
  // what serve is told wins over the app's settings; the KV cache not given here is the settings' (f16 unless changed)
  const engine = engineFlags(flags);
  const device = engine.device;
  const allowDirs = (lists["allow-dir"] ?? []).map((d) => {
    const dir = resolvePath(d);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--allow-dir ${d}: no such folder`);
    return dir;
  });
  const api = apiFlags(flags, env);
  const tokenFlag = str(flags, "token");
  let token: string | undefined;
  try {
    if (tokenFlag !== undefined) token = checkToken(tokenFlag, "--token");
    else if (env[TOKEN_ENV]) token = checkToken(env[TOKEN_ENV], TOKEN_ENV);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const host = str(flags, "host") ?? "127.0.0.1";
  if (!isLoopback(host) && token === undefined) {
    throw new UsageError(`--host ${host} needs --token T (or ${TOKEN_ENV}, or web_token in the config): anyone who can reach it could use the app`);
  }
  const gpu = number(flags, "gpu", { int: true, min: 0 });
  if (gpu !== undefined) {
    if (device !== "cuda" && device !== "auto") throw new UsageError(`--gpu ${gpu} needs --device cuda or auto (the models run on ${device ? `--device ${device}` : "the CPU"})`);
    // the engine worker inherits it: CUDA numbers the one GPU it may see 0
    process.env.CUDA_VISIBLE_DEVICES = String(gpu);
  }
  let server;
  try {
    server = await startServer({
      port,
      host,
      dataDir: str(flags, "data") ?? defaultDataDir(),
      staticDir: defaultStaticDir(),
      ...(model !== undefined ? { model: resolvePath(model) } : {}),
      ...(adapter !== undefined ? { adapter: resolvePath(adapter) } : {}),
      ...(allowDirs.length ? { allowDirs } : {}),
      engine,
      ...(token !== undefined ? { token } : {}),
      ...(api ? { api } : {}),
      log: (line) => process.stderr.write(`moe-studio serve: ${line}\n`),
    });
  } catch (e) {
    if (e instanceof MissingRendererError) throw new UsageError(e.message);
    if ((e as NodeJS.ErrnoException).code === "EADDRINUSE") {
      const apiInUse = api && (e as Error).message.includes(`port ${api.port}`);
      throw new UsageError(apiInUse ? `API port ${api.port} is in use; pick another with --api-port N (0: any free port)` : `port ${port} is in use; pick another with --port N (0: any free port)`);
    }
    throw e;
  }
  process.stdout.write(`moe-studio serve: ${server.urlWithToken}\n`);
  if (server.api) {
    const keyNote = api!.key ? "clients send the key as Authorization: Bearer KEY" : "no key: any program on this machine may use it (set one with --api-key)";
    process.stdout.write(`moe-studio serve: OpenAI-compatible API at ${server.api.baseUrl} (${keyNote}; docs at ${server.api.baseUrl.replace(/\/v1$/, "/docs")})\n`);
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const stop = (s: NodeJS.Signals) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve(s);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  // A second signal while shutting down quits at once.
  const force = () => process.exit(130);
  process.once("SIGINT", force);
  process.once("SIGTERM", force);
  try {
    await server.close();
  } finally {
    process.off("SIGINT", force);
    process.off("SIGTERM", force);
  }
  process.stderr.write(`moe-studio serve: stopped (${signal})\n`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  try {
    // `dataset <sub> ARGS...` has its own parser (electron/cli/dataset.ts)
    if (argv[0] === "dataset") return await cmdDataset(argv.slice(1));
    const { command, flags, lists, args } = parseArgs(argv);
    if (Object.keys(lists).length && command !== "serve") throw new UsageError(`--${Object.keys(lists)[0]} is an option of serve only`);
    if (flags.help || command === "help" || command === null) {
      process.stdout.write(HELP);
      return command === null && !flags.help ? 1 : 0;
    }
    switch (command) {
      case "generate":
        return await cmdGenerate(flags);
      case "logits":
        return await cmdLogits(flags);
      case "chat":
        return await cmdChat(flags);
      case "bench":
        return await cmdBench(flags);
      case "grad":
        return await cmdGrad(flags);
      case "train":
        return await (await import("./cli/train.js")).cmdTrain(flags);
      case "serve":
        return await cmdServe(flags, lists);
      case "pull":
        return await (await import("./cli/pull.js")).cmdPull(args[0], flags);
      case "quantize":
        return await (await import("./cli/quantize.js")).cmdQuantize(flags);
      case "export-gguf":
        return await (await import("./cli/export-gguf.js")).exportGgufCommand(flags);
      case "export":
        return await (await import("./cli/export.js")).cmdExport(flags);
      case "export-job":
        return (await import("./cli/cluster.js")).cmdExportJob(flags);
      case "import-adapter":
        return await (await import("./cli/cluster.js")).cmdImportAdapter(args[0], flags);
      default:
        throw new UsageError(`unknown command "${command}" (commands: generate, logits, chat, bench, grad, train, quantize, export-gguf, export, export-job, import-adapter, serve, pull, dataset; see --help)`);
    }
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`moe-studio: ${msg.split("\n")[0]}\n`);
    return 1;
  }
}
