#!/usr/bin/env node
/**
 * Regenerates src/sim/pve-api/schema.json, the part of the official Proxmox VE API schema that the
 * simulator checks requests against and the client's decoders are tested with.
 *
 * The official schema is `api-viewer/apidata.js` in the proxmox/pve-docs repository (the data behind the
 * API viewer). This script reads it from a local clone of that repository, keeps the endpoints nstance
 * calls (ENDPOINTS below; add one here when the client starts calling it), copies each method's object
 * unchanged, and writes it with the repository, commit and date it came from. The output is committed, so
 * neither the tests nor the simulator need the network or the clone.
 *
 *   node scripts/pve-api-schema.mjs --repo PATH/TO/pve-docs [--ref COMMIT]   # default ref: HEAD
 *   node scripts/pve-api-schema.mjs --repo PATH/TO/pve-docs --check          # exit 1 if the committed file differs
 */
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const outDir = join(root, "src", "sim", "pve-api")
const SOURCE_REPOSITORY = "https://github.com/proxmox/pve-docs"
const SOURCE_PATH = "api-viewer/apidata.js"

/** "<METHOD> <path>" of every PVE API call the client makes or the simulator serves. */
export const ENDPOINTS = [
  "DELETE /nodes/{node}/qemu/{vmid}",
  "DELETE /nodes/{node}/storage/{storage}/content/{volume}",
  "GET /access/permissions",
  "GET /cluster/nextid",
  "GET /cluster/resources",
  "GET /cluster/status",
  "GET /nodes/{node}/qemu",
  "GET /nodes/{node}/qemu/{vmid}/config",
  "GET /nodes/{node}/qemu/{vmid}/status/current",
  "GET /nodes/{node}/network",
  "GET /nodes/{node}/status",
  "GET /nodes/{node}/storage",
  "GET /nodes/{node}/storage/{storage}/content",
  "GET /nodes/{node}/storage/{storage}/content/{volume}",
  "GET /nodes/{node}/tasks",
  "GET /nodes/{node}/tasks/{upid}/status",
  "GET /version",
  "POST /nodes/{node}/qemu/{vmid}/clone",
  "POST /nodes/{node}/qemu/{vmid}/config",
  "POST /nodes/{node}/qemu/{vmid}/status/shutdown",
  "POST /nodes/{node}/qemu/{vmid}/status/start",
  "POST /nodes/{node}/qemu/{vmid}/status/stop",
  "POST /nodes/{node}/storage/{storage}/upload",
  "PUT /nodes/{node}/qemu/{vmid}/config",
  "PUT /nodes/{node}/qemu/{vmid}/resize"
]

const fail = (message) => {
  console.error(`pve-api-schema: ${message}`)
  process.exit(1)
}

const args = process.argv.slice(2)
const option = (name) => {
  const i = args.indexOf(name)
  if (i === -1) return undefined
  const value = args[i + 1]
  if (value === undefined || value.startsWith("--")) fail(`${name} needs a value`)
  return value
}
const repo = option("--repo")
if (repo === undefined) fail("usage: node scripts/pve-api-schema.mjs --repo PATH/TO/pve-docs [--ref COMMIT] [--check]")
const git = (...gitArgs) => execFileSync("git", ["-C", repo, ...gitArgs], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
let commit, lastChange, text
try {
  commit = git("rev-parse", `${option("--ref") ?? "HEAD"}^{commit}`).trim()
  lastChange = git("log", "-1", "--format=%H %cs %s", commit, "--", SOURCE_PATH).trim()
  text = git("show", `${commit}:${SOURCE_PATH}`)
} catch (error) {
  fail(`cannot read ${SOURCE_PATH} from the git repository ${repo}: ${error.message.split("\n")[0]}`)
}

// apidata.js is one JavaScript statement, `const apiSchema = [ … ];`, whose value is JSON.
const start = text.indexOf("[")
const end = text.lastIndexOf("]")
if (!text.trimStart().startsWith("const apiSchema") || start === -1 || end < start) fail(`${SOURCE_PATH} is not "const apiSchema = [...]"`)
let tree
try {
  tree = JSON.parse(text.slice(start, end + 1))
} catch (error) {
  fail(`${SOURCE_PATH} does not hold JSON: ${error.message}`)
}

const byPath = new Map()
const walk = (nodes) => {
  for (const node of nodes) {
    if (typeof node?.path === "string") byPath.set(node.path, node)
    if (Array.isArray(node?.children)) walk(node.children)
  }
}
walk(tree)

const excerpt = {}
for (const key of [...ENDPOINTS].sort()) {
  const [method, path] = key.split(" ")
  const info = byPath.get(path)?.info?.[method]
  if (info === undefined) fail(`the official schema at ${commit} has no ${key}`)
  excerpt[key] = info
}

const json = `${JSON.stringify(excerpt, null, 1)}\n`
const source = {
  repository: SOURCE_REPOSITORY,
  path: SOURCE_PATH,
  commit,
  lastChangeOfPath: lastChange,
  licence: "AGPL-3.0-or-later (the schema's *.js files in pve-docs, per its debian/copyright), Copyright Proxmox Server Solutions GmbH",
  generator: "scripts/pve-api-schema.mjs",
  endpoints: ENDPOINTS.length
}
const sourceJson = `${JSON.stringify(source, null, 2)}\n`

const schemaFile = join(outDir, "schema.json")
const sourceFile = join(outDir, "source.json")
if (args.includes("--check")) {
  const same = (file, expected) => { try { return readFileSync(file, "utf8") === expected } catch { return false } }
  if (!same(schemaFile, json) || !same(sourceFile, sourceJson)) fail(`src/sim/pve-api/ differs from what ${commit} gives; run without --check`)
  console.log(`pve-api-schema: src/sim/pve-api/ matches ${commit}`)
} else {
  writeFileSync(schemaFile, json)
  writeFileSync(sourceFile, sourceJson)
  console.log(`pve-api-schema: ${ENDPOINTS.length} endpoints from ${SOURCE_PATH} at ${commit} → src/sim/pve-api/schema.json`)
}
