import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { runCommand } from "../support/cli.js"
import { closedPort } from "../support/net.js"
import { makeAdminWorld } from "./harness.js"


const lines = (text: string) => text.split("\n").filter((line) => line !== "")

describe("nstance-admin over the wire (in-process endpoint)", () => {
  it.scopedLive("status, instances and groups show the leader's truth, as tables and as JSON", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 1 })
      const rpc = yield* world.client()
      yield* world.waitUntil("the VM runs", Effect.map(rpc.ListInstances({}), (list) => list.some((i) => i.phase === "running")))
      const server = ["--server", world.leader.address]
      const status = yield* world.admin(["status", ...server])
      expect(status.status).toBe(0)
      expect(lines(status.stdout)[0]).toMatch(/^cluster acme, shard pve-a: leader replica-1 \(term 1\), log seq \d+, event log log[0-9a-z]{26}$/)
      expect(status.stdout).toContain("instances 1 (running 1)")
      const statusJson = JSON.parse((yield* world.admin(["status", "--json", ...server])).stdout)
      expect(statusJson).toMatchObject({ leader: "replica-1", term: 1, instances: 1, byPhase: { running: 1 }, groups: 1, desiredVms: 1 })
      const [vm] = [...world.sim.model.vms.values()].filter((v) => v.config.get("template") !== "1")
      const instances = JSON.parse((yield* world.admin(["instances", "--json", ...server])).stdout)
      expect(instances).toHaveLength(1)
      expect(instances[0]).toMatchObject({ id: vm?.config.get("name"), vmid: vm?.vmid, node: vm?.node, phase: "running", tenant: "shop", group: "web" })
      const table = lines((yield* world.admin(["instances", ...server])).stdout)
      expect(table[0]).toMatch(/^INSTANCE\s+GROUP\s+PHASE\s+NODE\s+VMID\s+IPS\s+NOTE$/)
      expect(table[1]).toContain(`shop/web  running  ${vm?.node}`)
      const groups = lines((yield* world.admin(["groups", ...server])).stdout)
      expect(groups[1]).toMatch(/^shop\/web\s+web\s+1\s+1\s+1\s+0\s+0\s+static\s+cpu:1,memory:512,disk:4$/)
      const show = JSON.parse((yield* world.admin(["instance", "show", instances[0].id, "--json", ...server])).stdout)
      expect(show.id).toBe(instances[0].id)
      const validate = yield* world.admin(["validate", ...server])
      expect(validate.stdout).toBe("✓ config.jsonc is valid: 1 groups, 1 desired VMs\n")
      // The default address comes from the environment.
      const viaEnv = yield* world.admin(["groups", "--json"], { NSTANCE_ADMIN_ADDR: world.leader.address })
      expect(JSON.parse(viaEnv.stdout)).toHaveLength(1)
      // Registration is off here: a nonce is refused with one line.
      const nonce = yield* world.admin(["nonce", instances[0].id, ...server])
      expect(nonce.status).toBe(1)
      expect(lines(nonce.stderr)).toEqual([expect.stringMatching(/^✗ agent registration is off on this shard/)])
    }), { timeout: 20_000 })

  it.scopedLive("one clear line for a server that is down, refused credentials, a missing token; a standby is followed once", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0 })
      const port = yield* Effect.promise(closedPort)
      const down = yield* world.admin(["status", "--server", `127.0.0.1:${port}`])
      expect(down.status).toBe(1)
      expect(lines(down.stderr)).toEqual([`✗ no admin endpoint answers at 127.0.0.1:${port} (connection refused); is nstance-server running there with an admin token?`])
      const refused = yield* world.admin(["status", "--server", world.leader.address], { NSTANCE_ADMIN_TOKEN: "a-wrong-token-of-enough-length" })
      expect(refused.status).toBe(1)
      expect(lines(refused.stderr)).toEqual(["✗ the admin endpoint refused the credentials (no admin token or operator certificate, or not one the server accepts)"])
      const missing = yield* world.admin(["status", "--server", world.leader.address], { NSTANCE_ADMIN_TOKEN: undefined })
      expect(lines(missing.stderr)).toEqual([
        "✗ no credentials: set NSTANCE_ADMIN_TOKEN or give --admin-token-file (the token the servers were started with), " +
        "or give --cert-file and --key-file (an operator certificate from nstance-admin cert issue)"
      ])
      const short = yield* world.admin(["status", "--server", world.leader.address], { NSTANCE_ADMIN_TOKEN: "short" })
      expect(lines(short.stderr)).toEqual([expect.stringMatching(/^✗ the admin token from NSTANCE_ADMIN_TOKEN is 5 characters; use at least 16/)])
      const standby = yield* world.standby
      const followed = yield* world.admin(["status", "--json", "--server", standby.address])
      expect(followed.status).toBe(0)
      expect(JSON.parse(followed.stdout)).toMatchObject({ leader: "replica-1" })
      // A standby that names no leader: one line saying so.
      const lost = yield* makeAdminWorld({ size: 0, lead: false })
      const noLeader = yield* lost.admin(["groups", "--server", lost.leader.address])
      expect(noLeader.status).toBe(1)
      expect(lines(noLeader.stderr)).toEqual([`✗ ${lost.leader.address}: not the leader; the leader is ${lost.leader.address}`])
    }), { timeout: 20_000 })

  it.scopedLive("group set and delete, instance create and delete", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0 })
      const server = ["--server", world.leader.address]
      const set = yield* world.admin(["group", "set", "shop/api", "--template", "api", "--size", "0", "--vars", "tier=gold,zone=a", ...server])
      expect(set.stdout).toBe("group shop/api (dynamic): size 0, template api; 0 live, 0 running — the leader converges to it now\n")
      const bad = yield* world.admin(["group", "set", "shop-api", ...server])
      expect(lines(bad.stderr)).toEqual(["✗ \"shop-api\" must be tenant/group"])
      const refused = yield* world.admin(["group", "set", "shop/web", "--template", "api", ...server])
      expect(lines(refused.stderr)).toEqual([expect.stringMatching(/^✗ group change refused: group shop\/web is defined in config\.jsonc/)])
      const created = yield* world.admin(["instance", "create", "shop/web", "--json", ...server])
      const id = JSON.parse(created.stdout).instanceId as string
      expect(id).toMatch(/^web/)
      const rpc = yield* world.client()
      yield* world.waitUntil("the operator's instance runs", Effect.map(rpc.GetInstance({ instanceId: id }), (i) => i.phase === "running"))
      // Group size 0: the reconcile leaves an operator's instance alone.
      yield* Effect.sleep("600 millis")
      expect((yield* rpc.GetInstance({ instanceId: id })).phase).toBe("running")
      const deleted = yield* world.admin(["instance", "delete", id, ...server])
      expect(deleted.stdout).toContain(`${id}: delete requested`)
      yield* world.waitUntil("the instance is gone", Effect.map(rpc.ListInstances({}), (list) => list.length === 0))
      const gone = yield* world.admin(["instance", "delete", id, ...server])
      expect(lines(gone.stderr)).toEqual([`✗ no instance ${id} in this shard`])
      const groupDeleted = yield* world.admin(["group", "delete", "shop/api", ...server])
      expect(groupDeleted.stdout).toBe("dynamic group shop/api deleted; its VMs are deleted by the leader\n")
    }), { timeout: 20_000 })

  it("every wire command has --help", async () => {
    for (const command of [["status"], ["instances"], ["groups"], ["group", "set"], ["group", "delete"], ["instance", "create"], ["instance", "delete"], ["instance", "show"], ["refresh"], ["validate"], ["nonce"], ["watch"]]) {
      const result = await runCommand(adminCommand, "nstance-admin", [...command, "--help"])
      expect(result.status, command.join(" ")).toBe(0)
      expect(result.stdout, command.join(" ")).toContain("--server")
    }
  })
})
