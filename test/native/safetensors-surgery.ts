// Header surgery for bad-input tests: read a safetensors file's header and data, write them back (the header as
// given, so tests can make it lie), or build a file from a raw header string.
import { readFileSync, writeFileSync } from "node:fs";

export type StHeader = Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;

/** safetensors: u64 little-endian header length, JSON header {name: {dtype, shape, data_offsets}}, then data. */
export function readHeader(file: string): { header: StHeader; data: Buffer } {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString("utf8")), data: buf.subarray(8 + n) };
}

/** A file from a header given as text (written verbatim: numbers JSON cannot hold exactly, duplicated keys...). */
export function rawSafetensors(headerText: string, data: Buffer): Buffer {
  let json = Buffer.from(headerText, "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

export function writeHeader(file: string, header: object, data: Buffer) {
  writeFileSync(file, rawSafetensors(JSON.stringify(header), data));
}
