/** Deterministic pseudo-random bytes (xorshift32; no Math.random, so failures reproduce). */
export const patternBytes = (length: number, seed = 1): Uint8Array => {
  const out = new Uint8Array(length)
  let x = seed >>> 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}
