/**
 * The fixed chaos seeds CI runs, split over several files (`seedsNN.test.ts`) so each stays short and the
 * two vitest workers share them. A failing seed fails its test with the checker's report: violations, the
 * history around the first one and the command that reproduces it.
 */
import { describe, expect, it } from "vitest"
import { failureReport, runSeed } from "./world.js"

/** Seeds `from` … `from + count − 1`, one test each (seeds from 1000 on are storms: bigger groups, more faults). */
export const chaosSeeds = (from: number, count: number) =>
  describe(`chaos seeds ${from}–${from + count - 1}`, () => {
    for (let seed = from; seed < from + count; seed++) {
      it(`seed ${seed} keeps every invariant and converges`, async () => {
        const result = await runSeed({ seed })
        if (result.violations.length > 0) expect.fail(failureReport(result))
        expect(result.convergedAfterMs).toBeDefined()
      }, 30_000)
    }
  })
