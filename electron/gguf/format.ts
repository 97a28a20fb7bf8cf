// GGUF v3, the file format of llama.cpp / ggml: constants and a streaming writer.
//
// Layout (all little-endian):
//   "GGUF" u32 version=3 | u64 tensor_count | u64 kv_count
//   kv_count × (string key, u32 value_type, value)            string = u64 byte length + UTF-8 bytes
//                                                             array  = u32 elem_type + u64 count + elems
//   tensor_count × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
//   zero padding to `general.alignment` (32), then the data section: each tensor at its offset (relative to the
//   section start), every offset a multiple of the alignment.
// ne[0] is the fastest-varying dimension (the row length): a PyTorch [out, in] weight is ne = [in, out].
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";

export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** ggml tensor types we write (values from ggml.h's enum ggml_type). */
export enum GGMLType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  Q4_K = 12,
}

/** [elements per block, bytes per block] */
export const GGML_BLOCK: Record<GGMLType, [number, number]> = {
  [GGMLType.F32]: [1, 4],
  [GGMLType.F16]: [1, 2],
  [GGMLType.Q4_0]: [32, 18],   // f16 d + 16 bytes of nibbles
  [GGMLType.Q8_0]: [32, 34],   // f16 d + 32 int8
  [GGMLType.Q4_K]: [256, 144], // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
};

export const GGML_TYPE_NAME: Record<GGMLType, string> = {
  [GGMLType.F32]: "F32",
  [GGMLType.F16]: "F16",
  [GGMLType.Q4_0]: "Q4_0",
  [GGMLType.Q8_0]: "Q8_0",
  [GGMLType.Q4_K]: "Q4_K",
};

/** gguf_type: the value types of metadata. */
export enum GGUFValueType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
  UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

export type GGUFKV =
  | { key: string; type: GGUFValueType.UINT32 | GGUFValueType.INT32 | GGUFValueType.FLOAT32 | GGUFValueType.UINT64 | GGUFValueType.FLOAT64; value: number }
  | { key: string; type: GGUFValueType.BOOL; value: boolean }
  | { key: string; type: GGUFValueType.STRING; value: string }
  | { key: string; type: GGUFValueType.ARRAY; itemType: GGUFValueType.STRING; value: string[] }
  | { key: string; type: GGUFValueType.ARRAY; itemType: GGUFValueType.INT32 | GGUFValueType.FLOAT32 | GGUFValueType.UINT32; value: ArrayLike<number> };

export const kv = {
  u32: (key: string, value: number): GGUFKV => ({ key, type: GGUFValueType.UINT32, value }),
  f32: (key: string, value: number): GGUFKV => ({ key, type: GGUFValueType.FLOAT32, value }),
  bool: (key: string, value: boolean): GGUFKV => ({ key, type: GGUFValueType.BOOL, value }),
  str: (key: string, value: string): GGUFKV => ({ key, type: GGUFValueType.STRING, value }),
  strs: (key: string, value: string[]): GGUFKV => ({ key, type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value }),
  i32s: (key: string, value: ArrayLike<number>): GGUFKV => ({ key, type: GGUFValueType.ARRAY, itemType: GGUFValueType.INT32, value }),
  f32s: (key: string, value: ArrayLike<number>): GGUFKV => ({ key, type: GGUFValueType.ARRAY, itemType: GGUFValueType.FLOAT32, value }),
};

export interface GGUFTensorInfo {
  name: string;
  ne: number[];     // GGUF order: ne[0] = row length
  type: GGMLType;
}

export function tensorBytes(t: { ne: number[]; type: GGMLType }): number {
  const [be, bb] = GGML_BLOCK[t.type];
  if (t.ne[0] % be !== 0) throw new Error(`tensor row length ${t.ne[0]} is not a multiple of ${GGML_TYPE_NAME[t.type]}'s block of ${be}`);
  return (t.ne[0] / be) * bb * t.ne.slice(1).reduce((a, b) => a * b, 1);
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

/** Byte builder for the header (small: metadata + tensor infos; the vocabulary is the largest part). */
class Bytes {
  private chunks: Buffer[] = [];
  length = 0;
  private push(b: Buffer) {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.push(b);
  }
  i32(v: number) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v | 0);
    this.push(b);
  }
  u64(v: number) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number) {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  f64(v: number) {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(v);
    this.push(b);
  }
  u8(v: number) {
    this.push(Buffer.from([v & 0xff]));
  }
  str(s: string) {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.push(b);
  }
  raw(b: Buffer) {
    this.push(b);
  }
  concat(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

function writeValue(out: Bytes, type: GGUFValueType, v: unknown, key: string) {
  switch (type) {
    case GGUFValueType.UINT32:
      if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0xffffffff) throw new Error(`gguf: ${key}: ${v} is not a uint32`);
      return out.u32(v as number);
    case GGUFValueType.INT32:
      if (!Number.isInteger(v)) throw new Error(`gguf: ${key}: ${v} is not an int32`);
      return out.i32(v as number);
    case GGUFValueType.UINT64:
      return out.u64(v as number);
    case GGUFValueType.FLOAT32:
      if (typeof v !== "number") throw new Error(`gguf: ${key}: ${v} is not a number`);
      return out.f32(v);
    case GGUFValueType.FLOAT64:
      return out.f64(v as number);
    case GGUFValueType.BOOL:
      return out.u8(v ? 1 : 0);
    case GGUFValueType.STRING:
      return out.str(v as string);
    default:
      throw new Error(`gguf: ${key}: unsupported value type ${type}`);
  }
}

/** Serialise the header (everything before the data section), padded to the alignment. */
export function encodeHeader(kvs: GGUFKV[], tensors: GGUFTensorInfo[], alignment = GGUF_ALIGNMENT): { header: Buffer; offsets: number[]; dataBytes: number } {
  const seen = new Set<string>();
  for (const e of kvs) {
    if (seen.has(e.key)) throw new Error(`gguf: metadata key ${e.key} written twice`);
    seen.add(e.key);
  }
  const names = new Set<string>();
  const out = new Bytes();
  out.raw(Buffer.from("GGUF", "ascii"));
  out.u32(GGUF_VERSION);
  out.u64(tensors.length);
  out.u64(kvs.length);
  for (const e of kvs) {
    out.str(e.key);
    out.u32(e.type);
    if (e.type === GGUFValueType.ARRAY) {
      out.u32(e.itemType);
      out.u64(e.value.length);
      for (let i = 0; i < e.value.length; i++) writeValue(out, e.itemType, e.value[i], e.key);
    } else {
      writeValue(out, e.type, e.value, e.key);
    }
  }
  const offsets: number[] = [];
  let off = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`gguf: tensor ${t.name} written twice`);
    names.add(t.name);
    out.str(t.name);
    out.u32(t.ne.length);
    for (const n of t.ne) out.u64(n);
    out.u32(t.type);
    out.u64(off);
    offsets.push(off);
    off = align(off + tensorBytes(t), alignment);
  }
  const pad = align(out.length, alignment) - out.length;
  if (pad) out.raw(Buffer.alloc(pad));
  return { header: out.concat(), offsets, dataBytes: off };
}

/** FILE.tmp-<pid>-<ms>: the temporary file GGUFStreamWriter writes before renaming it to FILE. */
export function ggufTempPath(path: string, pid: number = process.pid, time: number = Date.now()): string {
  return `${path}.tmp-${pid}-${time}`;
}
/** Matches a base name made by ggufTempPath: [1] the final name, [2] the writer's pid, [3] the time it began (ms). */
export const GGUF_TEMP_RE = /^(.+)\.tmp-(\d+)-(\d+)$/;

/**
 * Writes FILE.gguf as FILE.gguf.tmp-<pid>-<time> and renames it when complete: a crash or an error never leaves a
 * file under the final name. Tensor data must be appended in header order; each tensor is padded to the alignment.
 */
export class GGUFStreamWriter {
  readonly tmpPath: string;
  private fd: number | null;
  private tensorIndex = 0;
  private tensorWritten = 0;
  private written = 0;
  private readonly failAfter: number | null;
  readonly totalBytes: number;

  constructor(readonly path: string, kvs: GGUFKV[], readonly tensors: GGUFTensorInfo[], readonly alignment = GGUF_ALIGNMENT) {
    const { header, dataBytes } = encodeHeader(kvs, tensors, alignment);
    this.totalBytes = header.length + dataBytes;
    // Test hook: MOE_STUDIO_FAIL_WRITE_AFTER=N makes the write that crosses byte N fail like a full disk (ENOSPC),
    // so the tests can show that a failed export leaves no file behind.
    const f = process.env.MOE_STUDIO_FAIL_WRITE_AFTER;
    this.failAfter = f !== undefined && f !== "" ? Number(f) : null;
    this.tmpPath = ggufTempPath(path);
    this.fd = openSync(this.tmpPath, "wx");
    try {
      this.write(header);
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  private write(b: Uint8Array) {
    if (this.fd === null) throw new Error("gguf: writer is closed");
    if (this.failAfter !== null && this.written + b.length > this.failAfter) {
      const err = new Error(`ENOSPC: no space left on device, write (injected by MOE_STUDIO_FAIL_WRITE_AFTER=${this.failAfter})`) as NodeJS.ErrnoException;
      err.code = "ENOSPC";
      throw err;
    }
    let done = 0;
    while (done < b.length) done += writeSync(this.fd, b, done, b.length - done);
    this.written += b.length;
  }

  /** Append bytes of the current tensor; moves on to the next tensor once this one is complete. */
  append(bytes: Uint8Array) {
    const t = this.tensors[this.tensorIndex];
    if (!t) throw new Error("gguf: more tensor data than tensors");
    const size = tensorBytes(t);
    if (this.tensorWritten + bytes.length > size) throw new Error(`gguf: ${t.name}: ${this.tensorWritten + bytes.length} bytes written, expected ${size}`);
    this.write(bytes);
    this.tensorWritten += bytes.length;
    if (this.tensorWritten === size) {
      const pad = align(size, this.alignment) - size;
      if (pad) this.write(new Uint8Array(pad));
      this.tensorIndex++;
      this.tensorWritten = 0;
    }
  }

  get bytesWritten() {
    return this.written;
  }

  /** fsync, close and rename to the final name. */
  finish() {
    if (this.tensorIndex !== this.tensors.length) throw new Error(`gguf: only ${this.tensorIndex} of ${this.tensors.length} tensors written`);
    if (this.written !== this.totalBytes) throw new Error(`gguf: wrote ${this.written} bytes, expected ${this.totalBytes}`);
    fsyncSync(this.fd!);
    closeSync(this.fd!);
    this.fd = null;
    renameSync(this.tmpPath, this.path);
  }

  /** Close and delete the temporary file (safe to call twice). */
  abort() {
    if (this.fd !== null) {
      try {
        closeSync(this.fd);
      } catch {
        /* already failing: the unlink below is what matters */
      }
      this.fd = null;
    }
    rmSync(this.tmpPath, { force: true });
  }
}

export interface ParsedGGUF {
  version: number;
  metadata: Map<string, { type: GGUFValueType; itemType?: GGUFValueType; value: unknown }>;
  tensors: Array<{ name: string; ne: number[]; type: GGMLType; offset: number }>;
  dataOffset: number;     // absolute offset of the data section
}

/** Parse a GGUF header (the inverse of encodeHeader; used by the tests and to inspect files). */
export function parseHeader(buf: Buffer): ParsedGGUF {
  let p = 0;
  const need = (n: number) => {
    if (p + n > buf.length) throw new Error(`gguf: truncated header at byte ${p}`);
  };
  const u32 = () => (need(4), (p += 4), buf.readUInt32LE(p - 4));
  const u64 = () => (need(8), (p += 8), Number(buf.readBigUInt64LE(p - 8)));
  const str = () => {
    const n = u64();
    need(n);
    p += n;
    return buf.toString("utf8", p - n, p);
  };
  const value = (t: GGUFValueType): unknown => {
    switch (t) {
      case GGUFValueType.UINT8: return (need(1), buf.readUInt8(p++));
      case GGUFValueType.INT8: return (need(1), buf.readInt8(p++));
      case GGUFValueType.UINT16: return (need(2), (p += 2), buf.readUInt16LE(p - 2));
      case GGUFValueType.INT16: return (need(2), (p += 2), buf.readInt16LE(p - 2));
      case GGUFValueType.UINT32: return u32();
      case GGUFValueType.INT32: return (need(4), (p += 4), buf.readInt32LE(p - 4));
      case GGUFValueType.FLOAT32: return (need(4), (p += 4), buf.readFloatLE(p - 4));
      case GGUFValueType.BOOL: return (need(1), buf.readUInt8(p++) !== 0);
      case GGUFValueType.STRING: return str();
      case GGUFValueType.UINT64: return u64();
      case GGUFValueType.INT64: return (need(8), (p += 8), Number(buf.readBigInt64LE(p - 8)));
      case GGUFValueType.FLOAT64: return (need(8), (p += 8), buf.readDoubleLE(p - 8));
      default: throw new Error(`gguf: unknown value type ${t} at byte ${p}`);
    }
  };
  if (buf.toString("ascii", 0, 4) !== "GGUF") throw new Error("gguf: bad magic (not a GGUF file)");
  p = 4;
  const version = u32();
  const nT = u64();
  const nKV = u64();
  const metadata: ParsedGGUF["metadata"] = new Map();
  for (let i = 0; i < nKV; i++) {
    const key = str();
    const type = u32() as GGUFValueType;
    if (type === GGUFValueType.ARRAY) {
      const itemType = u32() as GGUFValueType;
      const n = u64();
      const arr: unknown[] = new Array(n);
      for (let j = 0; j < n; j++) arr[j] = value(itemType);
      metadata.set(key, { type, itemType, value: arr });
    } else {
      metadata.set(key, { type, value: value(type) });
    }
  }
  const tensors: ParsedGGUF["tensors"] = [];
  for (let i = 0; i < nT; i++) {
    const name = str();
    const nd = u32();
    const ne: number[] = [];
    for (let j = 0; j < nd; j++) ne.push(u64());
    const type = u32() as GGMLType;
    tensors.push({ name, ne, type, offset: u64() });
  }
  const alignment = (metadata.get("general.alignment")?.value as number | undefined) ?? GGUF_ALIGNMENT;
  return { version, metadata, tensors, dataOffset: align(p, alignment) };
}
