/**
 * `npm run chaos -- --seeds N [--from S] [--two-shard | --registration] [--seed S | --list "S1 S2 …"] [--verbose]`: runs seeded chaos worlds (see world.ts)
 * one after another and judges each by the history checker. A failing seed prints its violations, the
 * history around the first one and the one command that reproduces it; the exit code is 1 if any failed.
 * `--two-shard` runs the first N two-shard seeds from S on (from 3000; one seed in five there runs two shards),
 * `--registration` the first N registration seeds (from 4000; one one-shard seed in three there).
 * `--break NAME` (or `NSTANCE_CHAOS_BREAK=NAME`) runs a deliberately broken build (breakModes.ts lists them):
 * `skip-iso-delete` (compensation leaves ISOs behind), `log-nonce` (fails registration seeds),
 * `retire-deletes-at-once` (fails seeds that roll out), `lost-append-ok`, `unconditional-append`,
 * `delete-skips-ownership`, `delete-ignores-placeholder`, and the two made by patching a product module as it
 * loads (breakHooks.mjs): `duplicate-vmid` and `reversed-scale-down`. Each seed's line says how often fencing
 * was put to the test: log appends of a deposed term refused, PVE calls of a deposed term that landed late.
 * `--pve-pauses` also pauses leaders at their PVE calls (see `RunOptions.pvePauses`: two product gaps).
 */
import { register } from "node:module"
import { BREAK_MODES, type BreakMode, SOURCE_BREAKS } from "./breakModes.js"

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name)
  return i < 0 ? undefined : args[i + 1]
}
const intFlag = (name: string, fallback: number): number => {
  const raw = flag(name)
  if (raw === undefined) return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0) {
    globalThis.console.error(`chaos: ${name} must be a non-negative integer, got ${JSON.stringify(raw)}`)
    process.exit(2)
  }
  return n
}
const breakName = flag("--break") ?? process.env["NSTANCE_CHAOS_BREAK"] ?? "none"
const breakMode: BreakMode | undefined = BREAK_MODES.find((mode) => mode === breakName)
if (breakMode === undefined) {
  globalThis.console.error(`chaos: --break (NSTANCE_CHAOS_BREAK) must be one of ${BREAK_MODES.filter((m) => m !== "none").join(", ")}, got ${JSON.stringify(breakName)}`)
  process.exit(2)
}
// Registered before the product is loaded: the patched module is the only one this process ever sees.
if (SOURCE_BREAKS.includes(breakMode)) register(new URL("./breakHooks.mjs", import.meta.url), { data: { mode: breakMode } })
const { failureReport, registrationSeeds, runSeed, twoShardSeeds } = await import("./world.js")
const single = flag("--seed")
const listed = flag("--list")
const seeds = listed !== undefined
  ? listed.split(/[\s,]+/).filter((item) => item !== "").map(Number).filter((n) => Number.isInteger(n) && n >= 0)
  : single !== undefined
  ? [intFlag("--seed", 0)]
  : args.includes("--two-shard")
  ? twoShardSeeds(intFlag("--from", 3000), intFlag("--seeds", 20))
  : args.includes("--registration")
  ? registrationSeeds(intFlag("--from", 4000), intFlag("--seeds", 20))
  : Array.from({ length: intFlag("--seeds", 20) }, (_, k) => intFlag("--from", 1) + k)
const verbose = args.includes("--verbose")
const pvePauses = args.includes("--pve-pauses")

const started = Date.now()
const failed: Array<number> = []
let current: number | undefined
// A world whose every fiber waits on something that never comes leaves Node nothing to run: say which seed.
process.on("exit", (code) => {
  if (current !== undefined) globalThis.console.error(`chaos: stopped during seed ${current} (exit ${code}): every fiber was waiting; reproduce: npm run chaos -- --seed ${current}`)
})
for (const seed of seeds) {
  current = seed
  const t0 = Date.now()
  const result = await runSeed({ seed, breakMode, verbose, pvePauses })
  const ms = Date.now() - t0
  if (result.violations.length === 0) {
    globalThis.console.log(`ok   ${result.summary} (${ms} ms)`)
  } else {
    failed.push(seed)
    globalThis.console.log(`FAIL ${result.summary} (${ms} ms)\n${failureReport(result, breakMode)}\n`)
  }
  const grep = flag("--grep")
  if (grep !== undefined) {
    for (const l of [...result.history.lines, ...result.history.productLog].sort((a, b) => a.i - b.i)) {
      if (l.text.includes(grep)) globalThis.console.log(`${String(l.i).padStart(6)} ${(l.t / 1000).toFixed(3).padStart(9)}s ${l.text}`)
    }
  }
}
current = undefined
const total = Date.now() - started
globalThis.console.log(`${seeds.length} seed(s), ${failed.length} failed${failed.length > 0 ? ` (${failed.join(", ")})` : ""}, ${(total / 1000).toFixed(1)} s wall`)
process.exit(failed.length > 0 ? 1 : 0)
