/**
 * `nstance-admin adopt --from-log` over the wire: the leader reports a VM with the shard's tags that another
 * event log owns (status), leaves it alone, and takes it over only when the operator says so.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { ProxmoxApiHttp } from "../../src/layers/ProxmoxApiHttp.js"
import { ProxmoxApi } from "../../src/services/ProxmoxApi.js"
import { freshInstanceId, makeVmBehindOurBack } from "../support/simWorld.js"
import { fastPveSettings } from "../shard/leaderHarness.js"
import { CLUSTER, makeAdminWorld, SHARD } from "./harness.js"


const lines = (text: string) => text.split("\n").filter((line) => line !== "")

const OTHER_LOG = `log${"5".repeat(26)}`

describe("nstance-admin adopt (in-process endpoint)", () => {
  it.scopedLive("status names another log's VM; adopt --from-log takes it over; a bad or unknown log ID is one line", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 1 })
      const rpc = yield* world.client()
      yield* world.waitUntil("the VM runs", Effect.map(rpc.ListInstances({}), (list) => list.some((i) => i.phase === "running")))
      const pve = Context.get(yield* Layer.build(ProxmoxApiHttp(fastPveSettings(world.sim))), ProxmoxApi)
      const name = freshInstanceId("web")
      const made = yield* makeVmBehindOurBack(pve, {
        name, node: "pve2", tags: `nstance;${CLUSTER};${SHARD}`, start: true,
        description: `# DO NOT EDIT BELOW - managed by nstance #\ntenant: shop\ngroup: web\nlog: ${OTHER_LOG}\n# DO NOT EDIT ABOVE - managed by nstance #`
      })
      const server = ["--server", world.leader.address]
      // A GC pass (every second) reads its notes and reports it; nothing adopts or deletes it.
      yield* world.waitUntil("status reports the other log", Effect.map(world.admin(["status", ...server]), (r) => r.stdout.includes(OTHER_LOG)))
      const status = lines((yield* world.admin(["status", ...server])).stdout)
      expect(status[1]).toMatch(new RegExp(`^⚠ 1 VM with this shard's tags belong to another event log, not this one: ${OTHER_LOG} \\(VM ${made.vmid}\\);.*nstance-admin adopt --from-log ${OTHER_LOG}`))
      expect((yield* rpc.ListInstances({})).map((i) => i.id)).not.toContain(name)

      const bad = yield* world.admin(["adopt", "--from-log", "not-a-log", ...server])
      expect(bad.status).toBe(1)
      expect(lines(bad.stderr)).toHaveLength(1)
      expect(bad.stderr).toContain("--from-log \"not-a-log\" is not an event log ID")
      const unknown = yield* world.admin(["adopt", "--from-log", `log${"6".repeat(26)}`, ...server])
      expect(unknown.status).toBe(1)
      expect(lines(unknown.stderr)).toEqual([expect.stringContaining(`VMs of other logs: ${OTHER_LOG} (1)`)])

      const adopted = yield* world.admin(["adopt", "--from-log", OTHER_LOG, ...server])
      expect(adopted.status).toBe(0)
      expect(lines(adopted.stdout)[0]).toBe(`1 VM of event log ${OTHER_LOG} adopted into this shard's log; the leader manages them from now on`)
      expect(lines(adopted.stdout)[2]).toMatch(new RegExp(`^${name}\\s+${made.vmid}\\s+pve2$`))
      const after = (yield* rpc.ListInstances({})).find((i) => i.id === name)
      expect(after).toMatchObject({ adopted: true, vmid: made.vmid, phase: "running" })
      const logId = (yield* rpc.Status()).logId
      expect(decodeURIComponent(world.sim.model.vms.get(made.vmid)?.config.get("description") ?? "")).toContain(`log: ${logId}`)
      expect((yield* rpc.Status()).ownership).toBeUndefined()
    }), { timeout: 20_000 })
})
