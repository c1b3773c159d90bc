/**
 * Seeded randomness for the simulator: every latency draw and probabilistic fault comes from one PRNG, so a
 * failing chaos run can be replayed exactly from its seed.
 */

export interface Prng {
  /** Uniform in [0, 1). */
  readonly next: () => number
  /** Uniform integer in [min, max]. */
  readonly int: (min: number, max: number) => number
  /** Uniform real in [min, max). */
  readonly between: (min: number, max: number) => number
}

// mulberry32: tiny, fast and good enough for test randomness (not for anything secret).
export const makePrng = (seed: number): Prng => {
  let state = (Math.floor(seed) ^ 0x9e3779b9) >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    between: (min, max) => min + next() * (max - min)
  }
}
