#!/usr/bin/env node
/**
 * Compiles the four commands into dist/ with esbuild: one ESM bundle per command, shared chunks split
 * out, and the cloud SDKs (loaded with a dynamic import only when a store of that kind is chosen) in
 * chunks of their own. Bundling with tree-shaking is what makes a command start fast: Node then parses the
 * parts of `effect` and `@effect/cli` a command uses instead of every module the packages' root files
 * re-export, and no TypeScript is compiled at start-up.
 *
 * `node scripts/build.mjs` builds once; `--if-stale` skips the build when dist/ is newer than every
 * source file (what `npm start` and the test setup call, so a fresh checkout and an edited one both work).
 */
import { build } from "esbuild"
import { existsSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const dist = join(root, "dist")
const stamp = join(dist, ".built")

export const ENTRY_POINTS = {
  "nstance-server": "src/main.ts",
  "nstance-admin": "src/admin.ts",
  "nstance-agent": "src/agent/main.ts",
  "nstance-pve-sim": "src/sim/main.ts"
}

const newestSource = (dir) => {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs)
  }
  return newest
}

const isStale = () => {
  if (!existsSync(stamp)) return true
  const built = statSync(stamp).mtimeMs
  return Math.max(newestSource(join(root, "src")), statSync(join(root, "package-lock.json")).mtimeMs, statSync(fileURLToPath(import.meta.url)).mtimeMs) > built
}

export const buildAll = async ({ ifStale = false } = {}) => {
  if (ifStale && !isStale()) return false
  // Built beside dist/ and swapped in at the end, so a command started meanwhile never finds dist/ half-written.
  const staging = `${dist}.tmp-${process.pid}`
  rmSync(staging, { recursive: true, force: true })
  await build({
    absWorkingDir: root,
    entryPoints: ENTRY_POINTS,
    outdir: staging,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    // Prefer packages' ESM builds: the UMD build of jsonc-parser loads its parts with a require() a bundle cannot follow.
    mainFields: ["module", "main"],
    target: "node20",
    sourcemap: "linked",
    legalComments: "none",
    logLevel: "warning",
    chunkNames: "chunks/[name]-[hash]",
    // Bundled CommonJS packages (the AWS and Google SDKs) call require() for Node built-ins.
    banner: { js: "import { createRequire as __nstanceCreateRequire } from 'node:module'; const require = __nstanceCreateRequire(import.meta.url);" }
  })
  writeFileSync(join(staging, ".built"), `${new Date().toISOString()}\n`)
  const old = `${dist}.old-${process.pid}`
  if (existsSync(dist)) renameSync(dist, old)
  renameSync(staging, dist)
  rmSync(old, { recursive: true, force: true })
  return true
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const ifStale = process.argv.includes("--if-stale")
  const started = Date.now()
  const built = await buildAll({ ifStale })
  if (built) console.error(`build: dist/ written in ${Date.now() - started} ms`)
}
