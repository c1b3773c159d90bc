/**
 * `nstance-server --validate` with the bucket's config runs the leader's preflight against PVE with the
 * `PROXMOX_*` variables (here: the HTTP simulator through the real client): warnings on stdout keep exit 0,
 * errors on stderr exit 2 (the config is valid, the cluster cannot run it as it is); without a token the
 * preflight is skipped and said so; a half-set token is refused (exit 1) naming the variable.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { serverCommand } from "../../src/cli/server.js"
import { PveSimulator, type RunningSimulator } from "../../src/sim/server.js"
import { adminConfigText } from "../admin/harness.js"
import { runCommand } from "../support/cli.js"
import { closedPort } from "../support/net.js"

const bucket = () => {
  const dir = mkdtempSync(join(tmpdir(), "nstance-preflight-"))
  mkdirSync(join(dir, "shard", "pve-a"), { recursive: true })
  writeFileSync(join(dir, "shard", "pve-a", "config.jsonc"), adminConfigText(2))
  return dir
}

const validate = (dir: string, env: Readonly<Record<string, string | undefined>>) =>
  Effect.promise(() => runCommand(serverCommand, "nstance-server", ["--validate", "--storage", "file", "--bucket", dir, "--shard", "pve-a"], { env }))

const envOf = (sim: RunningSimulator) => ({ PROXMOX_API_URL: sim.url, PROXMOX_TOKEN_ID: sim.tokenId, PROXMOX_TOKEN_SECRET: sim.tokenSecret })

const VALID = "✓ Remote shard configuration is valid (shard/pve-a/config.jsonc): 1 groups, 2 desired VMs"
const NODE_LOCAL = "⚠ storage local (cloud_init_iso_storage) is node-local, not shared: each VM's cloud-init ISO stays on its node, " +
  "which blocks live migration and HA of nstance's VMs; use a shared storage with iso content"

describe("nstance-server --validate runs the preflight against PVE", () => {
  it.scopedLive("warnings only: printed on stdout after the config's verdict, exit 0", () =>
    Effect.gen(function* () {
      const sim = yield* PveSimulator({ nodes: 3, http: true })
      const result = yield* validate(bucket(), envOf(sim))
      expect(result.stderr).toBe("")
      expect(result.stdout.split("\n")).toEqual([VALID, `preflight against PVE 9.0.10 at ${sim.url}: 1 warning`, NODE_LOCAL, ""])
      expect(result.status).toBe(0)
    }))

  it.scopedLive("a privilege missing and a storage without iso content: each one ✗ line on stderr, exit 2", () =>
    Effect.gen(function* () {
      const sim = yield* PveSimulator({ nodes: 3, http: true })
      sim.model.revokePrivilege("Datastore.AllocateSpace")
      sim.model.updateStorage("local", { content: ["vztmpl", "backup"] })
      const result = yield* validate(bucket(), envOf(sim))
      expect(result.stdout.split("\n")).toEqual([VALID, `preflight against PVE 9.0.10 at ${sim.url}: 2 errors`, ""])
      expect(result.stderr.split("\n")).toEqual([
        "✗ storage local (cloud_init_iso_storage) on every node (pve1, pve2, pve3) does not take ISO images: its content is vztmpl,backup, iso is needed",
        "✗ the API token lacks Datastore.AllocateSpace on /storage/local-lvm: needed to allocate the clones' disks (POST …/clone with storage)",
        "✗ preflight: 2 errors; the cluster cannot run this config as it is",
        ""
      ])
      expect(result.status).toBe(2)
    }))

  it.scopedLive("PVE that does not answer: one error naming the call, exit 2", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(closedPort)
      const result = yield* validate(bucket(), { PROXMOX_API_URL: `http://127.0.0.1:${port}/api2/json`, PROXMOX_TOKEN_ID: "nstance@pve!t", PROXMOX_TOKEN_SECRET: "s3cret" })
      const lines = result.stderr.split("\n")
      expect(lines[0]).toMatch(/^✗ cannot reach PVE: GET \/version: no response .*ECONNREFUSED/)
      expect(lines.slice(1)).toEqual(["✗ preflight: 1 error; the cluster cannot run this config as it is", ""])
      expect(result.stdout).toContain(`preflight against PVE (no answer) at http://127.0.0.1:${port}/api2/json: 1 error`)
      expect(result.status).toBe(2)
    }), { timeout: 20_000 })

  it.scopedLive("no token: the config alone is judged and the skip is said on stderr; half a token is refused, naming the variable", () =>
    Effect.gen(function* () {
      const dir = bucket()
      const skipped = yield* validate(dir, { PROXMOX_TOKEN_ID: undefined, PROXMOX_TOKEN_SECRET: undefined })
      expect(skipped.stdout).toBe(`${VALID}\n`)
      expect(skipped.stderr).toBe("⚠ preflight against PVE skipped: PROXMOX_TOKEN_ID and PROXMOX_TOKEN_SECRET are not set\n")
      expect(skipped.status).toBe(0)
      const half = yield* validate(dir, { PROXMOX_TOKEN_ID: "nstance@pve!t", PROXMOX_TOKEN_SECRET: undefined })
      expect(half.stderr).toBe("✗ PROXMOX_TOKEN_SECRET is not set; the proxmox provider needs the API token's secret\n")
      expect(half.status).toBe(1)
    }))

  it.scopedLive("--proxmox-env-dir: the shard's own connection file is used (not the environment's); an unreadable one is refused", () =>
    Effect.gen(function* () {
      const sim = yield* PveSimulator({ nodes: 3, http: true })
      const dir = bucket()
      const envDir = join(dir, "pve")
      mkdirSync(envDir)
      const args = ["--validate", "--storage", "file", "--bucket", dir, "--shard", "pve-a", "--proxmox-env-dir", envDir]
      const run = () => Effect.promise(() => runCommand(serverCommand, "nstance-server", args, { env: { PROXMOX_API_URL: "http://127.0.0.1:9/api2/json", PROXMOX_TOKEN_ID: "x@pve!y", PROXMOX_TOKEN_SECRET: "z" } }))
      const missing = yield* run()
      expect(missing.stderr).toBe(`✗ --proxmox-env-dir ${join(envDir, "pve-a.env")}: no such file\n`)
      expect(missing.status).toBe(1)
      writeFileSync(join(envDir, "pve-a.env"), `PROXMOX_API_URL=${sim.url}\nPROXMOX_TOKEN_ID=${sim.tokenId}\nPROXMOX_TOKEN_SECRET=${sim.tokenSecret}\n`, { mode: 0o600 })
      const result = yield* run()
      expect(result.stdout.split("\n")).toEqual([VALID, `preflight against PVE 9.0.10 at ${sim.url}: 1 warning`, NODE_LOCAL, ""])
      expect(result.status).toBe(0)
    }))
})
