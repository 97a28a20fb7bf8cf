// `moe-studio train --model DIR (--data FILE.jsonl | --dataset ID [--db PATH]) --out RUN_DIR [--config train.json]
//  [--resume RUN_DIR] [--base-quant none|nf4] [--device D] [--threads N] [--progress] [--estimate]`
//
// --estimate: no training and no run folder (--out may be left out): the data is read and prepared as for a run (so an
// empty dataset or a model without a chat template fails the same way), then one JSON line {"memory": {...,
// activations_lower_bound, total_steps, train_samples, validation_samples}} and exit 0, also when it would not fit
// (fits false): the app asks this before it starts a run, in a child process.
//
// On stdout: one JSON line {"memory": {base_bytes, adapter_bytes, activation_bytes, total_bytes, available_bytes, params,
// fits}} before step 1, one per optimizer step {"step","loss","lr","grad_norm","tokens_per_s","elapsed_s","eta_s"} and
// one per evaluation {"step","eval_loss"}, and for an MoE model one per routing window {"routing": {"step", "from_step",
// "top_k", "layers": [{"layer", "counts"}]}}: the tokens each expert received over training steps (from_step, step]
// (about 40 windows a run, and one at a pause and at the end; validation is not counted) (--progress: readable lines
// on stderr instead, no routing). RUN_DIR/train_args.json holds the
// resolved arguments (what --resume continues with), RUN_DIR/checkpoint-<step>/ every save_steps and RUN_DIR/final/
// at the end are PEFT adapter folders with the trainer's state beside (native/train/trainer.h). The batch of every
// step follows from (seed, step) alone (a seeded shuffle per epoch), so --resume continues the same run and ends
// bit-identical to an uninterrupted one. SIGINT / SIGTERM: the running step finishes, a checkpoint is written, exit
// 130 / 143.
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { NativeTrainSeq, NativeTrainer } from "../engine/addon.js";
import { loadModel } from "../engine/engine.js";
import { parseDevice } from "../engine/addon.js";
import { nativeConfig, readTrainConfig, resolveTrainArgs, type TrainArgs } from "../train/config.js";
import { sweepLeftovers } from "../services/leftovers.js";
import { databaseFile, defaultDataDir } from "../services/paths.js";
import { DatasetRepo } from "../store/datasets.js";
import { openDatabase } from "../store/db.js";
import { epochOrder, parseJsonl, prepareSamples, readJsonl } from "../train/data.js";

/** A library dataset's samples as messages-format jsonl (the app's database, or --db PATH). */
export function datasetText(id: string, dbPath: string | undefined): string {
  const file = resolve(dbPath ?? databaseFile(defaultDataDir()));
  if (!existsSync(file)) throw new Error(`--db ${file}: no such database`);
  const db = openDatabase(file);
  try {
    const repo = new DatasetRepo(db);
    if (!repo.exists(id)) throw new Error(`--dataset ${id}: no such dataset in ${file} (see moe-studio dataset list)`);
    return repo.exportAll(id);
  } finally {
    db.close();
  }
}

type Flags = Record<string, string | true>;
const str = (f: Flags, k: string) => (typeof f[k] === "string" ? (f[k] as string) : undefined);

function writeAtomic(path: string, text: string) {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

function latestCheckpoint(runDir: string): { dir: string; step: number } | null {
  let best: { dir: string; step: number } | null = null;
  for (const e of existsSync(runDir) ? readdirSync(runDir) : []) {
    const m = /^checkpoint-(\d+)$/.exec(e);
    if (m && existsSync(join(runDir, e, "trainer_state.json")) && (!best || Number(m[1]) > best.step)) best = { dir: join(runDir, e), step: Number(m[1]) };
  }
  return best;
}

export async function cmdTrain(flags: Flags): Promise<number> {
  const modelDir = str(flags, "model");
  if (!modelDir) throw new Error("--model is required");
  const resumeDir = str(flags, "resume");
  const estimateOnly = flags.estimate === true;
  if (estimateOnly && resumeDir) throw new Error("--estimate is for a fresh run, not --resume (a resumed run already fitted)");
  const outDir = resolve(str(flags, "out") ?? resumeDir ?? "");
  if (!str(flags, "out") && !resumeDir && !estimateOnly) throw new Error("--out RUN_DIR is required");
  const data = str(flags, "data");
  const datasetId = str(flags, "dataset");
  if ((data === undefined) === (datasetId === undefined)) throw new Error("give one of --data FILE.jsonl or --dataset ID");
  if (str(flags, "db") !== undefined && datasetId === undefined) throw new Error("--db is an option of --dataset");
  const human = flags.progress === true;
  // arguments: --config, or on --resume the run's own train_args.json
  let args: TrainArgs;
  const cfgPath = str(flags, "config");
  const saved = resumeDir ? join(resumeDir, "train_args.json") : null;
  if (cfgPath) args = readTrainConfig(cfgPath);
  else if (saved && existsSync(saved)) args = readTrainConfig(saved);
  else args = resolveTrainArgs({});
  // the run folder must be writable before anything is computed
  if (!estimateOnly) {
    try {
      mkdirSync(outDir, { recursive: true });
      accessSync(outDir, constants.W_OK);
      writeAtomic(join(outDir, ".write-probe"), "");
    } catch (e) {
      throw new Error(`--out ${outDir}: cannot write there (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    // A checkpoint half-written by a run that was killed (a second Ctrl-C, a crash) is `.checkpoint-N.partial-PID`, the
    // same `.NAME.partial-PID` form the quantizer and the merged export use: swept once its writer is gone.
    sweepLeftovers([outDir], { match: (l) => l.kind === "quantize-temp" });
  }
  const threadsFlag = str(flags, "threads");
  const threads = threadsFlag !== undefined ? Number(threadsFlag) : undefined;
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 1)) throw new Error(`--threads must be an integer >= 1, got "${threadsFlag}"`);

  const bq = str(flags, "base-quant");
  if (bq !== undefined && bq !== "none" && bq !== "nf4") throw new Error(`--base-quant must be none or nf4, got "${bq}"`);
  // --base-quant nf4: Q-LoRA (the frozen base's projections quantized to NF4 at load)
  const device = parseDevice(str(flags, "device"));
  const model = await loadModel(modelDir, { ...(threads ? { threads } : {}), ...(bq ? { baseQuant: bq as "none" | "nf4" } : {}),
    ...(device ? { device } : {}) });
  let trainer: NativeTrainer | null = null;
  let offSignals = () => {};
  try {
    const source = data ?? `dataset ${datasetId}`;
    const read = data !== undefined ? readJsonl(data) : parseJsonl(datasetText(datasetId!, str(flags, "db")));
    if (read.messages.length === 0)
      throw new Error(`${source}: the dataset is empty: no sample in ${read.lines} line(s)${read.firstError ? ` (${read.firstError})` : ""}`);
    const prep = await prepareSamples(model, read.messages, { maxLen: args.max_seq_length, lossOn: args.loss_on });
    if (prep.samples.length === 0)
      throw new Error(prep.tooLong > 0
        ? `${source}: every sample is too long: ${prep.tooLong} sample(s) have no assistant token within max_seq_length ${args.max_seq_length}; raise max_seq_length`
        : `${source}: no sample has a token to learn (${prep.unaligned} left out: assistant spans not found)`);
    let train = prep.samples;
    let val: NativeTrainSeq[] = [];
    if (args.validation_file) {
      const v = readJsonl(args.validation_file);
      val = (await prepareSamples(model, v.messages, { maxLen: args.max_seq_length, lossOn: args.loss_on })).samples;
    } else if (args.validation_split) {
      const order = epochOrder(train.length, args.seed, -1);
      const nVal = Math.max(1, Math.floor(train.length * args.validation_split));
      if (nVal >= train.length) throw new Error(`validation_split ${args.validation_split} leaves no training sample of ${train.length}`);
      const valSet = new Set(order.slice(0, nVal));
      val = train.filter((_, i) => valSet.has(i));
      train = train.filter((_, i) => !valSet.has(i));
    }
    const perStep = args.per_device_train_batch_size * args.gradient_accumulation_steps;
    const stepsPerEpoch = Math.max(1, Math.ceil(train.length / perStep));
    const totalSteps = args.max_steps ?? Math.max(1, Math.ceil((args.num_train_epochs ?? 1) * stepsPerEpoch));
    const info = `${train.length} training sample(s)${val.length ? `, ${val.length} for validation` : ""}, ${read.rejected} line(s) rejected, ` +
      `${prep.truncated} truncated to ${args.max_seq_length} tokens, ${prep.tooLong + prep.unaligned} left out; ${totalSteps} steps of ${perStep} sample(s)`;
    process.stderr.write(`moe-studio train: ${info}\n`);
    if (estimateOnly) {
      let est;
      try {
        est = model.native.createTrainer(nativeConfig(args, totalSteps, resolve(modelDir)), { estimate: true });
      } catch (e) {
        throw new Error(`cannot train: ${(e as Error).message}`);
      }
      if (human) process.stderr.write(`memory: ${est.summary}\n`);
      process.stdout.write(JSON.stringify({ memory: { base_bytes: est.baseBytes, adapter_bytes: est.adapterBytes, activation_bytes: est.activationBytes,
        total_bytes: est.totalBytes, available_bytes: est.availableBytes, params: est.params, fits: est.fits, activations_lower_bound: est.activationsLowerBound,
        total_steps: totalSteps, train_samples: train.length, validation_samples: val.length } }) + "\n");
      return 0;
    }

    const ckpt = resumeDir ? latestCheckpoint(resumeDir) : null;
    if (resumeDir && !ckpt) throw new Error(`--resume ${resumeDir}: no checkpoint-<step>/ folder with trainer_state.json there`);
    // the data a checkpoint was trained on must be the data it continues on (same samples, same order rule)
    let h = 0x811c9dc5;
    for (const smp of train) for (const arr of [smp.ids, smp.labels, [-1]]) for (const v of arr) h = Math.imul(h ^ (v & 0xffff) ^ (v >>> 16), 0x01000193) >>> 0;
    const dataHash = `${train.length}:${h.toString(16)}`;
    if (ckpt) {
      let prev: { data?: string } = {};
      try { prev = JSON.parse(readFileSync(join(ckpt.dir, "trainer_extra.json"), "utf8")); } catch { /* checked below */ }
      if (prev.data !== dataHash)
        throw new Error(`--resume ${ckpt.dir}: it was trained on other data (${prev.data ?? "unknown"} vs ${dataHash} samples:hash); resume with the same --data/--dataset and config`);
    }
    const cfg = nativeConfig(args, totalSteps, resolve(modelDir));
    try {
      trainer = model.native.createTrainer(cfg, ckpt ? { resume: ckpt.dir } : {});
    } catch (e) {
      throw new Error(`cannot train: ${(e as Error).message}`);
    }
    // SIGINT / SIGTERM are caught from here on, before the first line a parent can react to (the memory line): a
    // signal sent on that line must still end in a checkpoint, not the default death
    let stop: NodeJS.Signals | null = null;
    const onSig = (s: NodeJS.Signals) => { if (stop) process.exit(s === "SIGINT" ? 130 : 143); stop = s; };
    process.on("SIGINT", onSig);
    process.on("SIGTERM", onSig);
    offSignals = () => { process.off("SIGINT", onSig); process.off("SIGTERM", onSig); };
    const mem = trainer.memory();
    // The estimate the trainer checked against free RAM, as one JSON line before step 1 (the app and
    // test/bench/train_cli.mjs compare it with what the run really uses).
    if (human) process.stderr.write(`memory: ${mem.summary}\n`);
    else process.stdout.write(JSON.stringify({ memory: { base_bytes: mem.baseBytes, adapter_bytes: mem.adapterBytes, activation_bytes: mem.activationBytes,
      total_bytes: mem.totalBytes, available_bytes: mem.availableBytes, params: mem.params, fits: mem.fits, total_steps: totalSteps, step: mem.step } }) + "\n");
    writeAtomic(join(outDir, "train_args.json"), JSON.stringify(args, null, 2) + "\n");
    const save = async (name: string, step: number) => {
      await trainer!.saveCheckpoint(join(outDir, name), JSON.stringify({ step, epoch: Math.floor(step / stepsPerEpoch), samples_seen: step * perStep, train_samples: train.length, data: dataHash }));
    };
    const batchFor = (k: number): NativeTrainSeq[] => {   // step k (0-based): its samples in the epoch's order
      const epoch = Math.floor(k / stepsPerEpoch), within = k % stepsPerEpoch;
      const order = epochOrder(train.length, args.seed, epoch);
      return order.slice(within * perStep, (within + 1) * perStep).map((i) => train[i]);
    };
    const evaluate = async (step: number) => {
      if (!val.length) return;
      const r = await trainer!.evaluate(val);
      if (human) process.stderr.write(`step ${step}: eval_loss ${r.loss.toFixed(4)}\n`);
      else process.stdout.write(JSON.stringify({ step, eval_loss: r.loss }) + "\n");
    };
    // routing telemetry: the counters restart at every window, so each line is that window's own load
    const routingEvery = Math.max(1, Math.ceil(totalSteps / 40));
    let routingFrom = mem.step;
    model.native.routing({ reset: true });
    const routingWindow = (step: number) => {
      const r = model.native.routing({ reset: true });
      if (human || !r.layers.length || step <= routingFrom) return;
      process.stdout.write(JSON.stringify({ routing: { step, from_step: routingFrom, top_k: r.topK, layers: r.layers } }) + "\n");
      routingFrom = step;
    };
    const t0 = Date.now();
    let done = mem.step, tokens = 0;
    for (; done < totalSteps; ) {
      const r = await trainer.step(batchFor(done));
      done = r.step;
      tokens += r.tokens;
      const elapsed = (Date.now() - t0) / 1000;
      const perStepS = elapsed / Math.max(1, done - mem.step);
      const line = { step: r.step, loss: r.loss, lr: r.lr, grad_norm: r.gradNorm, tokens_per_s: tokens / Math.max(elapsed, 1e-9), elapsed_s: elapsed, eta_s: perStepS * (totalSteps - done) };
      if (human) process.stderr.write(`step ${r.step}/${totalSteps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(3)}  grad_norm ${r.gradNorm.toFixed(3)}  ${line.tokens_per_s.toFixed(0)} tok/s  eta ${line.eta_s.toFixed(0)} s\n`);
      else process.stdout.write(JSON.stringify(line) + "\n");
      if (done % routingEvery === 0 || stop) routingWindow(done);
      if (args.eval_steps > 0 && done % args.eval_steps === 0) await evaluate(done);
      if (stop) {
        await save(`checkpoint-${done}`, done);
        process.stderr.write(`moe-studio train: ${stop}: saved ${join(outDir, `checkpoint-${done}`)}\n`);
        return stop === "SIGINT" ? 130 : 143;
      }
      if (args.save_steps > 0 && done % args.save_steps === 0 && done < totalSteps) await save(`checkpoint-${done}`, done);
    }
    offSignals();
    routingWindow(done);
    if (args.eval_steps > 0 && done % args.eval_steps !== 0) await evaluate(done);
    await save(`checkpoint-${done}`, done);
    await save("final", done);
    process.stderr.write(`moe-studio train: done, ${done} steps; adapter in ${join(outDir, "final")}\n`);
    return 0;
  } finally {
    offSignals();
    trainer?.dispose();
    model.close();
  }
}
