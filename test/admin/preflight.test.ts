/**
 * Where an operator sees the leader's preflight against PVE: `/readyz` (the status stays 200 — a standby
 * could do no better — and the reason carries the findings, errors first) and `nstance-admin status` (its
 * JSON and its text). The leader runs on the HTTP simulator through the real client, with a privilege taken
 * from the token and pve2's template gone.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeHealthServer } from "../../src/http/HealthServer.js"
import { makeAdminWorld } from "./harness.js"

const get = (url: string) => Effect.promise(async () => {
  const response = await fetch(url)
  return { status: response.status, body: await response.text() }
})

const CLONE = "the API token lacks VM.Clone on /vms/9000, /vms/9002: needed to clone the template (POST /nodes/{node}/qemu/{vmid}/clone)"
const TEMPLATE = "template debian-13-template (TemplateName of shop/web) is missing on pve2"
const NODE_LOCAL = "storage local (cloud_init_iso_storage) is node-local, not shared: each VM's cloud-init ISO stays on its node, " +
  "which blocks live migration and HA of nstance's VMs; use a shared storage with iso content"

describe("the preflight's findings in /readyz and nstance-admin status", () => {
  it.scopedLive("a missing privilege and a missing template: named in /readyz (still 200) and by status, JSON and text", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({
        beforeLead: (sim) => {
          sim.model.revokePrivilege("VM.Clone")
          sim.model.destroyTemplate(9001)
        }
      })
      const address = yield* makeHealthServer(world.replica, { host: "127.0.0.1", port: 0 })
      if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("the health server is not on TCP")
      const readyz = `http://127.0.0.1:${address.port}/readyz`
      yield* world.waitUntil("/readyz carries the preflight", Effect.map(get(readyz), (r) => r.body.includes("preflight:")))
      expect(yield* get(readyz)).toEqual({
        status: 200,
        body: `ready: leader of term 1; preflight: 1 error, 2 warnings: ✗ ${CLONE}; ⚠ ${TEMPLATE}; ⚠ ${NODE_LOCAL}\n`
      })

      const json = yield* world.admin(["status", "--json", "--server", world.leader.address])
      expect(json.stderr).toBe("")
      expect(json.status).toBe(0)
      const status = JSON.parse(json.stdout)
      expect(status.preflight).toMatchObject({
        pveVersion: "9.0.10",
        findings: [{ severity: "error", message: CLONE }, { severity: "warning", message: TEMPLATE }, { severity: "warning", message: NODE_LOCAL }]
      })
      const text = (yield* world.admin(["status", "--server", world.leader.address])).stdout.split("\n")
      const at = text.findIndex((line) => line.startsWith("preflight against PVE 9.0.10 at "))
      expect(text[at]).toMatch(/: 1 error, 2 warnings$/)
      expect(text.slice(at + 1, at + 4)).toEqual([`  ✗ ${CLONE}`, `  ⚠ ${TEMPLATE}`, `  ⚠ ${NODE_LOCAL}`])
    }), { timeout: 30_000 })
})
