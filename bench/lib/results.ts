/** Writes a bench's figures as JSON under `bench/results/{name}.json`, with the machine they were measured on. */
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), "..", "results")

export const writeResult = (name: string, figures: unknown): string => {
  mkdirSync(resultsDir, { recursive: true })
  const file = join(resultsDir, `${name}.json`)
  const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? "unknown", node: process.version, platform: `${process.platform}-${process.arch}`, loadavg: loadavg() }
  writeFileSync(file, `${JSON.stringify({ bench: name, date: new Date().toISOString(), machine, figures }, null, 2)}\n`)
  return file
}
