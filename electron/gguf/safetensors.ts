// A small safetensors reader for the exporters: the headers of one model folder (single file or sharded through
// model.safetensors.index.json), and positional reads of whole tensors or row ranges as f32. Nothing is read
// before it is asked for, so a model of any size is streamed a few rows at a time and never held whole in RAM.
// (The engine has its own memory-mapped reader in native/format/; this one serves Node-side file conversion.)
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
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

export class SafetensorsFolder {
  readonly tensors = new Map<string, SourceTensor>();
  private fds = new Map<string, number>();

  constructor(readonly dir: string) {
    const index = join(dir, "model.safetensors.index.json");
    let files: string[];
    if (existsSync(index)) {
      let j: { weight_map?: Record<string, string> };
      try {
        j = JSON.parse(readFileSync(index, "utf8"));
      } catch (e) {
        throw new Error(`${index}: invalid JSON (${(e as Error).message})`);
      }
      if (!j.weight_map || typeof j.weight_map !== "object") throw new Error(`${index}: field "weight_map" is missing`);
      files = [...new Set(Object.values(j.weight_map))].sort();
    } else {
      files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort() : [];
    }
    if (files.length === 0) throw new Error(`${dir}: no *.safetensors file (is it a Hugging Face model folder?)`);
    for (const f of files) this.readHeader(join(dir, f));
  }

  private fd(file: string): number {
    let fd = this.fds.get(file);
    if (fd === undefined) {
      fd = openSync(file, "r");
      this.fds.set(file, fd);
    }
    return fd;
  }

  private readHeader(file: string) {
    if (!existsSync(file)) throw new Error(`${file}: file not found (named in model.safetensors.index.json)`);
    const fd = this.fd(file);
    const size = fstatSync(fd).size;
    const lenBuf = Buffer.alloc(8);
    if (size < 8 || readSync(fd, lenBuf, 0, 8, 0) !== 8) throw new Error(`${file}: too short to be a safetensors file`);
    const n = Number(lenBuf.readBigUInt64LE(0));
    if (n <= 0 || 8 + n > size) throw new Error(`${file}: header length ${n} exceeds the file size ${size}`);
    const hb = Buffer.alloc(n);
    readSync(fd, hb, 0, n, 8);
    let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    try {
      header = JSON.parse(hb.toString("utf8"));
    } catch (e) {
      throw new Error(`${file}: invalid safetensors header JSON (${(e as Error).message})`);
    }
    const dataStart = 8 + n;
    const meta = ((header as Record<string, unknown>).__metadata__ ?? {}) as Record<string, string>;
    for (const [name, t] of Object.entries(header)) {
      if (name === "__metadata__") continue;
      const where = `${basename(file)}: tensor "${name}"`;
      if (!(t.dtype in DTYPE_BYTES)) throw new Error(`${where} has dtype ${t.dtype}; only F32, F16, BF16 and moe-studio's quantized blocks can be exported`);
      const dtype = t.dtype as SourceDType;
      const quant = meta[`quant.${name}`];
      if (dtype === "U8" && !(quant in STORED_BLOCKS)) throw new Error(`${where} is U8 without a "quant.${name}" entry in __metadata__: not a tensor moe-studio quantize wrote`);
      const count = t.shape.reduce((a, b) => a * b, 1);
      const [b, e] = t.data_offsets;
      if (e - b !== count * DTYPE_BYTES[dtype] || dataStart + e > size) {
        throw new Error(`${where}: data_offsets [${b}, ${e}] do not fit shape [${t.shape}] ${dtype} in a ${size}-byte file`);
      }
      if (this.tensors.has(name)) throw new Error(`${where} appears in two shards`);
      if (dtype === "U8") {
        const [be, bb] = STORED_BLOCKS[quant];
        const rowBytes = t.shape[t.shape.length - 1];
        if (t.shape.length < 2 || rowBytes % bb !== 0) throw new Error(`${where}: shape [${t.shape}] is not rows of whole ${quant} blocks (${bb} bytes)`);
        const shape = [...t.shape.slice(0, -1), (rowBytes / bb) * be];
        this.tensors.set(name, { name, file, dtype, shape, quant: quant as SourceTensor["quant"], rowBytes, offset: dataStart + b, byteLength: e - b });
        continue;
      }
      this.tensors.set(name, { name, file, dtype, shape: t.shape, offset: dataStart + b, byteLength: e - b });
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
