#!/usr/bin/env node
// Runs the compiled command (dist/, built by `npm run build`, which `npm install` runs as its prepare step).
import { existsSync } from "node:fs"

const entry = new URL("../dist/nstance-agent.js", import.meta.url)
if (!existsSync(entry)) {
  process.stderr.write("nstance-agent: dist/nstance-agent.js is missing; run `npm run build` in the nstance checkout first\n")
  process.exit(1)
}
await import(entry.href)
