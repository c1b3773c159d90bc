/**
 * Runs every benchmark in bench/ one after another (never in parallel: they measure time on a shared
 * two-core machine) and prints their figures. `npm run bench -- topsis iso` runs only the named ones.
 */
import { spawnSync } from "node:child_process"
import { readdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const wanted = process.argv.slice(2)
const benches = readdirSync(here)
  .filter((file) => file.endsWith(".ts") && file !== "run.ts")
  .map((file) => file.slice(0, -3))
  .filter((name) => wanted.length === 0 || wanted.includes(name))
  .sort()

if (benches.length === 0) {
  console.error(`no benchmark matches ${wanted.join(", ")}`)
  process.exit(1)
}

let failed = 0
for (const name of benches) {
  console.log(`\n=== bench/${name}.ts`)
  const result = spawnSync(process.execPath, ["--import", "tsx", join(here, `${name}.ts`)], { stdio: "inherit" })
  if (result.status !== 0) {
    failed++
    console.error(`bench/${name}.ts exited with ${result.status ?? result.signal}`)
  }
}
process.exit(failed === 0 ? 0 : 1)
