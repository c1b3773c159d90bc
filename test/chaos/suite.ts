/**
 * The fixed chaos seeds CI runs, split over several files (`seedsNN.test.ts`) so each stays short and the
 * two vitest workers share them. A failing seed fails its test with the checker's report: violations, the
 * history around the first one and the command that reproduces it. seeds01–08: 240 one-shard seeds;
 * seeds09–11: the first 20 two-shard seeds from 3000; seeds12–13: the first 20 registration seeds from 4000.
 * About one seed in four of each set rolls out (its instances replaced under the faults: shape.ts).
 */
import { describe, expect, it } from "vitest"
import { failureReport, registrationSeeds, runSeed, twoShardSeeds } from "./world.js"

/**
 * Per test file: how often its seeds put fencing to the test (deposed appends refused, deposed PVE calls landed
 * late). Keyed by the file, because the files of a worker share this module (vitest runs them unisolated).
 */
const fencedByFile = new Map<string, { appends: number; pve: number; seeds: number }>()
const fencedOfThisFile = () => {
  const file = expect.getState().testPath ?? "?"
  const counts = fencedByFile.get(file) ?? { appends: 0, pve: 0, seeds: 0 }
  fencedByFile.set(file, counts)
  return counts
}

const seedTest = (seed: number, what: string) =>
  it(`seed ${seed} keeps every invariant${what} and converges`, async () => {
    const result = await runSeed({ seed })
    const fenced = fencedOfThisFile()
    fenced.appends += result.fenced.appends
    fenced.pve += result.fenced.pve
    fenced.seeds++
    if (result.violations.length > 0) expect.fail(failureReport(result))
    expect(result.convergedAfterMs).toBeDefined()
  }, 30_000)

/**
 * After a file's seeds: a deposed leader must have reached the log in them — an append refused because a
 * newer term owns the seq — or the fencing rules judged nothing (issue 26). Registered last, so it runs last.
 */
export const fencingWasTested = () =>
  it("fencing was put to the test: a deposed term's log append was refused", () => {
    const fenced = fencedOfThisFile()
    globalThis.console.log(`chaos fencing: ${fenced.appends} deposed appends refused, ${fenced.pve} deposed PVE calls landed late, over ${fenced.seeds} seeds`)
    expect(fenced.appends).toBeGreaterThan(0)
  })

/** Seeds `from` … `from + count − 1`, one test each (seeds from 1000 on are storms: bigger groups, more faults). */
export const chaosSeeds = (from: number, count: number) =>
  describe(`chaos seeds ${from}–${from + count - 1}`, () => {
    for (let seed = from; seed < from + count; seed++) seedTest(seed, "")
  })

/** The `count` two-shard seeds after skipping the first `skip` from 3000 on (storms of two shards on one cluster and bucket). */
export const twoShardChaosSeeds = (skip: number, count: number) => {
  const seeds = twoShardSeeds(3000, skip + count).slice(skip)
  describe(`two-shard chaos seeds ${seeds[0]}–${seeds[seeds.length - 1]}`, () => {
    for (const seed of seeds) seedTest(seed, ", per shard and across shards,")
  })
}

/** The `count` registration seeds after skipping the first `skip` from 4000 on (agent registration on, the nonce rules judged). */
export const registrationChaosSeeds = (skip: number, count: number) => {
  const seeds = registrationSeeds(4000, skip + count).slice(skip)
  describe(`registration chaos seeds ${seeds[0]}–${seeds[seeds.length - 1]}`, () => {
    for (const seed of seeds) seedTest(seed, ", nonces single-use and never leaked,")
  })
}
