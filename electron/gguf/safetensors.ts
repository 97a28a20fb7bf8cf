// A small safetensors reader for the exporters: the headers of one model folder (single file or sharded through
// model.safetensors.index.json), and positional reads of whole tensors or row ranges as f32. Nothing is read
// before it is asked for, so a model of any size is streamed a few rows at a time and never held whole in RAM.
// (The engine has its own memory-mapped reader in native/format/; this one serves Node-side file conversion.)
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { bf16ToF32, f16ToF32 } from "./half.js";

export type SourceDType = "F32" | "F16" | "BF16" | "U8";
const DTYPE_BYTES: Record<SourceDType, number> = { F32: 4, F16: 2, BF16: 2, U8: 1 };

/**
 * GGUF blocks stored by `moe-studio quantize` (electron/engine/quantize.ts): a U8 tensor [..., rows, row_bytes] marked
 * "quant.<name>": "q8_0" | "q4_0" | "q4_k" in __metadata__. [elements, bytes] per block.
 */
export const STORED_BLOCKS: Record<string, [number, number]> = { q8_0: [32, 34], q4_0: [32, 18], q4_k: [256, 144] };

export interface SourceTensor {
  name: string;
  file: string;           // absolute path of the shard
  dtype: SourceDType;
  shape: number[];        // PyTorch order: shape[0] = rows (slowest); for blocks, the logical (weight) shape
  quant?: "q8_0" | "q4_0" | "q4_k";  // GGUF blocks written by `moe-studio quantize`
  rowBytes?: number;      // bytes per row of blocks
  offset: number;         // absolute byte offset in the file
  byteLength: number;
}

/** The longest safetensors header read (the engine's limit too, native/format/limits.h): ~10 MiB for the largest hub models. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const MAX_RANK = 8;

/**
 * A shard name from model.safetensors.index.json, when it is a plain "*.safetensors" file name inside the folder.
 * Hub folders are hostile input: "../../etc/passwd" must never be opened (its bytes would end up in an error).
 */
export function checkShardName(name: unknown, index: string): string {
  const shown = typeof name === "string" ? JSON.stringify(name.slice(0, 80).replace(/[^\x20-\x7e]/g, "?")) : typeof name;
  if (typeof name !== "string" || name === "") throw new Error(`${index}: weight_map names shard ${shown}: not a file name`);
  if (/[/\\:\0]/.test(name) || name === "." || name === "..") {
    throw new Error(`${index}: weight_map names shard ${shown}: not a plain file name inside the model folder (no directories, no "..")`);
  }
  if (!name.endsWith(".safetensors") || name.length <= ".safetensors".length) throw new Error(`${index}: weight_map names shard ${shown}: not a *.safetensors file`);
  return name;
}

/** A header number that must be an exact non-negative integer (JSON.parse gives doubles: above 2^53 they are not exact). */
function exactUint(v: unknown): number | null {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : null;
}

export class SafetensorsFolder {
  readonly tensors = new Map<string, SourceTensor>();
  private fds = new Map<string, number>();

  constructor(readonly dir: string) {
    const index = join(dir, "model.safetensors.index.json");
    let files: string[];
    let weightMap: Record<string, string> | null = null;
    if (existsSync(index)) {
      let j: { weight_map?: unknown };
      try {
        j = JSON.parse(readFileSync(index, "utf8"));
      } catch (e) {
        throw new Error(`${index}: invalid JSON (${(e as Error).message})`);
      }
      if (!j || typeof j !== "object" || !j.weight_map || typeof j.weight_map !== "object" || Array.isArray(j.weight_map)) {
        throw new Error(`${index}: field "weight_map" is missing`);
      }
      weightMap = j.weight_map as Record<string, string>;
      files = [...new Set(Object.values(weightMap).map((f) => checkShardName(f, index)))].sort();
      if (files.length === 0) throw new Error(`${index}: weight_map is empty`);
      for (const f of files) {
        const p = join(dir, f);
        if (!existsSync(p)) throw new Error(`${p}: file not found (named in model.safetensors.index.json)`);
        if (!statSync(p).isFile()) throw new Error(`${p}: not a regular file (named in model.safetensors.index.json)`);
      }
    } else {
      files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort() : [];
    }
    if (files.length === 0) throw new Error(`${dir}: no *.safetensors file (is it a Hugging Face model folder?)`);
    for (const f of files) this.readHeader(join(dir, f));
    if (weightMap) {
      for (const [name, shard] of Object.entries(weightMap)) {
        const t = this.tensors.get(name);
        if (!t || basename(t.file) !== shard) throw new Error(`${index}: tensor "${name}" is listed in weight_map for ${shard} but is not in that file`);
      }
    }
  }

  private fd(file: string): number {
    let fd = this.fds.get(file);
    if (fd === undefined) {
      fd = openSync(file, "r");
      this.fds.set(file, fd);
    }
    return fd;
  }

  /**
   * One shard's header, validated as the engine validates it (native/format/safetensors.cpp): the length prefix at most
   * MAX_HEADER_BYTES and inside the file, dtypes known, every dimension and offset an exact integer, the element count
   * and byte size computed without overflow and equal to the data_offsets span, begin <= end <= data size, no tensor
   * named twice, no two byte ranges overlapping. Errors name the file and the tensor and never echo the file's bytes.
   */
  private readHeader(file: string) {
    const fd = this.fd(file);
    const size = fstatSync(fd).size;
    const lenBuf = Buffer.alloc(8);
    if (size < 8 || readSync(fd, lenBuf, 0, 8, 0) !== 8) throw new Error(`${file}: too short to be a safetensors file`);
    const len = lenBuf.readBigUInt64LE(0);
    // the length's value is not shown: for a file that is not safetensors those 8 bytes are its content
    if (len === 0n) throw new Error(`${file}: corrupt safetensors header: header length is 0`);
    if (len > BigInt(MAX_HEADER_BYTES)) throw new Error(`${file}: corrupt safetensors header: header length is over the ${MAX_HEADER_BYTES / 2 ** 20} MiB limit (not a safetensors file?)`);
    const n = Number(len);
    if (8 + n > size) throw new Error(`${file}: corrupt safetensors header: header length exceeds the file size ${size} (truncated, or not a safetensors file?)`);
    const hb = Buffer.alloc(n);
    if (readSync(fd, hb, 0, n, 8) !== n) throw new Error(`${file}: unexpected end of file reading the header`);
    let header: unknown;
    try {
      header = JSON.parse(hb.toString("utf8"));
    } catch {
      // JSON.parse's message quotes the offending text; the position is enough
      throw new Error(`${file}: corrupt safetensors header: not valid JSON`);
    }
    if (!header || typeof header !== "object" || Array.isArray(header)) throw new Error(`${file}: corrupt safetensors header: not a JSON object`);
    if (hasDuplicateKeys(hb.toString("utf8"))) throw new Error(`${file}: corrupt safetensors header: a key appears twice`);
    const dataStart = 8 + n;
    const dataSize = size - dataStart;
    const rawMeta = (header as Record<string, unknown>).__metadata__;
    const meta: Record<string, string> = {};
    if (rawMeta && typeof rawMeta === "object" && !Array.isArray(rawMeta)) {
      for (const [k, v] of Object.entries(rawMeta)) if (typeof v === "string") meta[k] = v;
    }
    const ranges: Array<[number, number, string]> = [];
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") continue;
      const where = `${basename(file)}: tensor "${name}"`;
      if (!entry || typeof entry !== "object" || Array.isArray(entry)) throw new Error(`${where}: header entry is not an object`);
      const t = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof t.dtype !== "string") throw new Error(`${where}: missing "dtype"`);
      if (!Array.isArray(t.shape)) throw new Error(`${where}: missing "shape"`);
      if (!Array.isArray(t.data_offsets) || t.data_offsets.length !== 2) throw new Error(`${where}: missing "data_offsets" [begin, end]`);
      if (!(t.dtype in DTYPE_BYTES)) throw new Error(`${where} has dtype ${JSON.stringify(t.dtype.slice(0, 32))}; only F32, F16, BF16 and moe-studio's quantized blocks can be exported`);
      if (t.shape.length > MAX_RANK) throw new Error(`${where}: shape has ${t.shape.length} dimensions (at most ${MAX_RANK})`);
      const dtype = t.dtype as SourceDType;
      const quant = meta[`quant.${name}`];
      if (dtype === "U8" && !(quant in STORED_BLOCKS)) throw new Error(`${where} is U8 without a "quant.${name}" entry in __metadata__: not a tensor moe-studio quantize wrote`);
      const shape: number[] = [];
      // BigInt products: [2^32, 2^32] must not round or wrap into something that matches data_offsets
      let count = 1n;
      for (let i = 0; i < t.shape.length; i++) {
        const d = exactUint(t.shape[i]);
        if (d === null) throw new Error(`${where}: shape[${i}] is not a non-negative integer below 2^53`);
        shape.push(d);
        count *= BigInt(d);
      }
      const b = exactUint(t.data_offsets[0]), e = exactUint(t.data_offsets[1]);
      if (b === null || e === null) throw new Error(`${where}: data_offsets must be two non-negative integers below 2^53`);
      if (e < b) throw new Error(`${where}: data_offsets [${b}, ${e}] end before they begin`);
      if (e > dataSize) throw new Error(`${where}: data_offsets [${b}, ${e}] reach past the end of the ${size}-byte file (truncated?)`);
      const bytes = count * BigInt(DTYPE_BYTES[dtype]);
      if (BigInt(e - b) !== bytes) {
        throw new Error(`${where}: shape [${shape}] ${dtype} needs ${bytes} bytes but data_offsets [${b}, ${e}] span ${e - b}`);
      }
      if (this.tensors.has(name)) throw new Error(`${where} appears in two shards`);
      if (e > b) ranges.push([b, e, name]);
      if (dtype === "U8") {
        const [be, bb] = STORED_BLOCKS[quant];
        const rowBytes = shape[shape.length - 1];
        if (shape.length < 2 || rowBytes % bb !== 0) throw new Error(`${where}: shape [${shape}] is not rows of whole ${quant} blocks (${bb} bytes)`);
        const logical = [...shape.slice(0, -1), (rowBytes / bb) * be];
        this.tensors.set(name, { name, file, dtype, shape: logical, quant: quant as SourceTensor["quant"], rowBytes, offset: dataStart + b, byteLength: e - b });
        continue;
      }
      this.tensors.set(name, { name, file, dtype, shape, offset: dataStart + b, byteLength: e - b });
    }
    // no two tensors may share bytes (sorted by begin: a range overlaps an earlier one iff it starts before the furthest end so far)
    ranges.sort((x, y) => x[0] - y[0]);
    let maxEnd = 0;
    let maxName = "";
    for (const [b, e, name] of ranges) {
      if (b < maxEnd) throw new Error(`${file}: corrupt safetensors header: tensors "${maxName}" and "${name}" overlap (byte ranges overlap at byte ${b})`);
      maxEnd = e;
      maxName = name;
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get(name: string): SourceTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.dir}: tensor "${name}" not found in the safetensors files`);
    return t;
  }

  /** Raw little-endian bytes of elements [start, start+count) of a tensor (flattened row-major). */
  readRaw(t: SourceTensor, start = 0, count = t.byteLength / DTYPE_BYTES[t.dtype]): Buffer {
    const es = DTYPE_BYTES[t.dtype];
    // Buffer.alloc is never pooled: byteOffset 0, so typed-array views over it are aligned
    const buf = Buffer.alloc(count * es);
    let done = 0;
    while (done < buf.length) {
      const r = readSync(this.fd(t.file), buf, done, buf.length - done, t.offset + start * es + done);
      if (r <= 0) throw new Error(`${t.file}: unexpected end of file reading tensor "${t.name}"`);
      done += r;
    }
    return buf;
  }

  /** Elements [start, start+count) widened to f32 (exact for every source dtype). */
  readF32(t: SourceTensor, start = 0, count = t.byteLength / DTYPE_BYTES[t.dtype], out?: Float32Array): Float32Array {
    if (t.quant) throw new Error(`${t.name} holds ${t.quant} blocks: copy them (readRaw), do not widen them`);
    const raw = this.readRaw(t, start, count);
    const o = out ?? new Float32Array(count);
    if (t.dtype === "F32") {
      o.set(new Float32Array(raw.buffer, raw.byteOffset, count));
    } else {
      const u16 = new Uint16Array(raw.buffer, raw.byteOffset, count);
      if (t.dtype === "F16") f16ToF32(u16, o);
      else bf16ToF32(u16, o);
    }
    return o;
  }

  close() {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}

/**
 * Whether any JSON object in `text` (a valid JSON document) has a key twice. JSON.parse keeps the last one silently,
 * the engine's parser sees both: a header that names a tensor twice means two readers would disagree about it.
 */
export function hasDuplicateKeys(text: string): boolean {
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(key)) return true;
        top.add(key);
      }
      expectKey = false;
      i = j;
    } else if (c === "{") {
      stack.push(new Set());
      expectKey = true;
    } else if (c === "[") {
      stack.push(null);
    } else if (c === "}" || c === "]") {
      stack.pop();
    } else if (c === ",") {
      expectKey = stack[stack.length - 1] !== null && stack.length > 0;
    }
  }
  return false;
}
