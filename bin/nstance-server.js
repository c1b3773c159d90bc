#!/usr/bin/env node
// Runs the compiled command (dist/, built by `npm run build`, which `npm install` runs as its prepare step).
import { existsSync } from "node:fs"

// Before the bundle loads (a few hundred ms): without a listener, SIGUSR1 opens Node's inspector on
// 127.0.0.1:9229 in a process that will hold the PVE token and keys, and SIGHUP/SIGUSR2 end it at once. These
// listeners stay for the life of the process (removing the last one restores Node's default); once the
// daemon has its own handlers (src/cli/signals.ts) they keep quiet.
for (const signal of ["SIGUSR1", "SIGUSR2", "SIGHUP"]) {
  process.on(signal, () => {
    if (process.listenerCount(signal) === 1) process.stderr.write(`nstance-server: ${signal} ignored\n`)
  })
}

const entry = new URL("../dist/nstance-server.js", import.meta.url)
if (!existsSync(entry)) {
  process.stderr.write("nstance-server: dist/nstance-server.js is missing; run `npm run build` in the nstance checkout first\n")
  process.exit(1)
}
await import(entry.href)
