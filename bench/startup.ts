/**
 * What starting nstance costs: wall time and peak RSS of `nstance-server --version` and
 * `nstance-admin --version` next to a bare `node -e 0` in the same runs (the ratio is what a busy machine
 * changes least), and the RSS of an idle leader — `nstance-server --embedded` (`npm start`) once the
 * example's VMs run and it has nothing left to do. The embedded leader carries the simulator and the
 * simulated agents in its own process, so its RSS is an upper bound for a leader next to a real cluster.
 *
 * Peak RSS comes from a preload that writes `process.resourceUsage().maxRSS` at exit. Runs the compiled
 * commands in `dist/` (build first: `npm run build`). Writes bench/results/startup.json.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { percentile } from "./lib/stats.js"
import { writeResult } from "./lib/results.js"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const RUNS = Number(process.env["STARTUP_RUNS"] ?? 10)
const scratch = mkdtempSync(join(tmpdir(), "nstance-startup-"))
const preload = join(scratch, "rss.mjs")
writeFileSync(preload, `import { writeFileSync } from "node:fs"
process.on("exit", () => { try { writeFileSync(process.env.RSS_OUT, String(process.resourceUsage().maxRSS)) } catch {} })
`)

interface Sample { readonly wallMs: number; readonly maxRssMB: number }

const runOnce = (args: ReadonlyArray<string>): Promise<Sample> =>
  new Promise((resolve, reject) => {
    const out = join(scratch, `rss-${Math.random().toString(36).slice(2)}`)
    const started = process.hrtime.bigint()
    const child = spawn(process.execPath, ["--import", preload, ...args], { cwd: root, env: { ...process.env, RSS_OUT: out }, stdio: "ignore" })
    child.on("error", reject)
    child.on("exit", (code) => {
      const wallMs = Number(process.hrtime.bigint() - started) / 1e6
      if (code !== 0) return reject(new Error(`${args.join(" ")} exited with ${code}`))
      resolve({ wallMs, maxRssMB: Number(readFileSync(out, "utf8")) / 1024 })
    })
  })

const summarize = (samples: ReadonlyArray<number>) => {
  const sorted = [...samples].sort((a, b) => a - b)
  return { min: sorted[0] ?? Number.NaN, median: percentile(sorted, 0.5), max: sorted.at(-1) ?? Number.NaN }
}

const commands: Record<string, ReadonlyArray<string>> = {
  "node -e 0": ["-e", "0"],
  "nstance-server --version": ["bin/nstance-server.js", "--version"],
  "nstance-admin --version": ["bin/nstance-admin.js", "--version"]
}

const samples = new Map<string, Array<Sample>>(Object.keys(commands).map((name) => [name, []]))
// Interleaved, so a burst of load on the machine hits every command alike.
for (let i = 0; i < RUNS; i++) {
  for (const [name, args] of Object.entries(commands)) samples.get(name)!.push(await runOnce(args))
}
const baseline = summarize(samples.get("node -e 0")!.map((s) => s.wallMs)).median
const startup = Object.fromEntries([...samples].map(([name, runs]) => {
  const wall = summarize(runs.map((s) => s.wallMs))
  const rss = summarize(runs.map((s) => s.maxRssMB))
  console.log(`${name.padEnd(26)} wall median ${wall.median.toFixed(0).padStart(4)} ms (${(wall.median / baseline).toFixed(1)}× node -e 0), peak RSS median ${rss.median.toFixed(0)} MB`)
  return [name, { wallMs: wall, maxRssMB: rss, vsNode: wall.median / baseline }]
}))

/** RSS (MB) of `pid` now, from /proc. */
const rssOf = (pid: number): number => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? Number.NaN) / 1024
}

/** `npm start`'s daemon until its VMs run, then idle for a while: RSS sampled every second. */
const idleLeader = (): Promise<{ readonly runningAfterS: number; readonly idleRssMB: ReturnType<typeof summarize>; readonly peakRssMB: number }> =>
  new Promise((resolve, reject) => {
    const out = join(scratch, "rss-idle")
    const started = Date.now()
    const child = spawn(process.execPath, ["--import", preload, "bin/nstance-server.js", "--embedded"], { cwd: root, env: { ...process.env, RSS_OUT: out }, stdio: ["ignore", "pipe", "pipe"] })
    let running = 0
    let runningAt = 0
    const idle: Array<number> = []
    const onLine = (text: string) => {
      for (const line of text.split("\n")) if (/running as VM \d+/.test(line)) running++
      if (running >= 12 && runningAt === 0) runningAt = Date.now()
    }
    child.stdout.on("data", (chunk: Buffer) => onLine(chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => onLine(chunk.toString()))
    const timer = setInterval(() => {
      if (child.pid === undefined || child.exitCode !== null) return
      if (runningAt !== 0 && Date.now() - runningAt > 5_000) idle.push(rssOf(child.pid))
      // 20 samples of an idle leader, well before the demo's first crash (75 s after start).
      if (idle.length >= 20 || Date.now() - started > 70_000) {
        clearInterval(timer)
        child.kill("SIGINT")
      }
    }, 1000)
    child.on("error", reject)
    child.on("exit", () => {
      clearInterval(timer)
      if (runningAt === 0) return reject(new Error(`the embedded leader did not run its 12 VMs within 70 s (${running} seen)`))
      resolve({ runningAfterS: (runningAt - started) / 1000, idleRssMB: summarize(idle), peakRssMB: Number(readFileSync(out, "utf8")) / 1024 })
    })
  })

const idle = await idleLeader()
console.log(`idle leader (--embedded)  : 12 VMs running after ${idle.runningAfterS.toFixed(1)} s, idle RSS median ${idle.idleRssMB.median.toFixed(0)} MB, peak ${idle.peakRssMB.toFixed(0)} MB`)
rmSync(scratch, { recursive: true, force: true })
const file = writeResult("startup", { runs: RUNS, startup, idleLeader: { ...idle, note: "simulator and simulated agents in the same process" } })
console.log(`\nwrote ${file}`)
