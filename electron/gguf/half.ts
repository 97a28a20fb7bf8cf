// IEEE half (f16) and bfloat16 <-> f32, element-wise over typed arrays. GGUF stores F16 tensors and the f16 scales
// of Q8_0/Q4_0/Q4_K blocks as IEEE half; safetensors sources may be bf16, f16 or f32.
//
// f32 -> f16 rounds to nearest, ties to even (what numpy's astype(float16) and ggml's GGML_FP32_TO_FP16 do), with
// overflow to ±inf, gradual underflow to subnormals and NaN kept NaN.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** One f32 -> f16 bit pattern, round-to-nearest-even. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / NaN (quiet)
  // unbiased exponent e = exp - 127; half normal range e in [-14, 15]
  const e = exp - 127;
  if (e > 15) return sign | 0x7c00; // overflow
  if (e >= -14) {
    // normal: keep 10 mantissa bits, round the dropped 13 to nearest even (a carry may bump the exponent,
    // up to inf, which is the correct rounding)
    let h = ((e + 15) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
    return sign | h;
  }
  if (e < -25) return sign; // below half the smallest subnormal: ±0
  // subnormal: value = mant' * 2^-24 with the implicit 1 made explicit
  mant |= 0x800000;
  const shift = -e - 14 + 13; // 14..24 bits dropped
  let h = mant >>> shift;
  const rest = mant & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (h & 1))) h++;
  return sign | h;
}

/** f16 bit pattern -> f32 value (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// A 65536-entry table makes f16 -> f32 one load per element (256 KiB, built on first use).
let F16_TABLE: Float32Array | null = null;
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) F16_TABLE[i] = f16BitsToF32(i);
  }
  return F16_TABLE;
}

/** out[i] = f16 src[i] widened to f32. */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const t = f16Table();
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
  return out;
}

/** out[i] = bf16 src[i] widened to f32 (bf16 is the top half of an f32: exact). */
export function bf16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = src[i] << 16;
  return out;
}

/** out[i] = f32 src[i] rounded to f16 bits (nearest even). */
export function f32ToF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]);
  return out;
}
