// The exporters' view of a model folder's safetensors (single file, or sharded through model.safetensors.index.json),
// read through the engine's own reader (native/format/safetensors.h via addon.openSafetensors): the same memory-mapped
// files and the same header validation loadModel applies (native/format/limits.h: header length, rank, exact
// integers, checked sizes, offsets inside the file, no duplicates or overlaps, shard names that stay in the folder),
// so there is one safetensors parser in the project and its errors name the file and the tensor. Nothing is read
// before it is asked for: a model of any size is streamed a few rows at a time, and the pages a read touched are
// released again, so memory stays flat.
import { basename, resolve } from "node:path";
import { loadAddon, type NativeSafetensors } from "../engine/addon.js";

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

const FLOAT_DTYPE: Record<string, SourceDType> = { f32: "F32", f16: "F16", bf16: "BF16" };

export class SafetensorsFolder {
  readonly tensors = new Map<string, SourceTensor>();
  private st: NativeSafetensors | null;

  constructor(readonly dir: string) {
    const addon = loadAddon();
    if (typeof addon.openSafetensors !== "function") throw new Error("this build of the engine has no openSafetensors: rebuild it (npm run build:native)");
    this.st = addon.openSafetensors(resolve(dir));
    try {
      for (const t of this.st.tensors()) {
        const where = `${basename(t.file)}: tensor "${t.name}"`;
        const quant = t.dtype in STORED_BLOCKS ? (t.dtype as SourceTensor["quant"]) : undefined;
        if (quant) {
          // the engine presents blocks with their logical shape; the stored row is whole blocks of it
          const [be, bb] = STORED_BLOCKS[quant];
          const rowBytes = (t.shape[t.shape.length - 1] / be) * bb;
          this.tensors.set(t.name, { name: t.name, file: t.file, dtype: "U8", shape: t.shape, quant, rowBytes, offset: t.offset, byteLength: t.nbytes });
          continue;
        }
        if (t.dtype === "u8") throw new Error(`${where} is U8 without a "quant.${t.name}" entry in __metadata__: not a tensor moe-studio quantize wrote`);
        const dtype = FLOAT_DTYPE[t.dtype];
        if (!dtype) throw new Error(`${where} has dtype ${t.dtype.toUpperCase()}; only F32, F16, BF16 and moe-studio's quantized blocks can be exported`);
        this.tensors.set(t.name, { name: t.name, file: t.file, dtype, shape: t.shape, offset: t.offset, byteLength: t.nbytes });
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private open(): NativeSafetensors {
    if (!this.st) throw new Error(`${this.dir}: safetensors folder is closed`);
    return this.st;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get(name: string): SourceTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.dir}: tensor "${name}" not found in the safetensors files`);
    return t;
  }

  /** Raw little-endian bytes of elements [start, start+count) of a tensor (flattened row-major; blocks: bytes). */
  readRaw(t: SourceTensor, start = 0, count = t.byteLength / DTYPE_BYTES[t.dtype]): Buffer {
    const es = DTYPE_BYTES[t.dtype];
    const b = this.open().readBytes(t.name, start * es, count * es);
    // a fresh ArrayBuffer from the engine: byteOffset 0, so typed-array views over it are aligned
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  }

  /** Elements [start, start+count) widened to f32 (exact for every source dtype). */
  readF32(t: SourceTensor, start = 0, count = t.byteLength / DTYPE_BYTES[t.dtype], out?: Float32Array): Float32Array {
    if (t.quant) throw new Error(`${t.name} holds ${t.quant} blocks: copy them (readRaw), do not widen them`);
    const x = this.open().readF32(t.name, start, count);
    if (!out) return x;
    out.set(x);
    return out;
  }

  close() {
    this.st?.close();
    this.st = null;
  }
}
