/** Failure handling of ProxmoxApiHttp against the simulator's fault injection: classes, retry bound, tasks, TLS. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import type { Upid } from "../../src/domain/pve/schemas.js"
import { PveApiError } from "../../src/services/ProxmoxApi.js"
import { clientFor, fastSettings, seen, setup } from "./support.js"

const apiError = (error: { readonly _tag: string }): PveApiError => {
  if (error instanceof PveApiError) return error
  throw new Error(`expected PveApiError, got ${error._tag}`)
}

describe("retries", () => {
  it.scopedLive("a 5xx injected twice is retried and the call succeeds on the third attempt", () =>
    Effect.gen(function* () {
      const { sim, api, metrics } = yield* setup()
      sim.faults.http({ method: "GET", path: "/cluster/resources", status: 500, times: 2 })
      const nodes = yield* api.nodeResources()
      expect(nodes).toHaveLength(3)
      expect(seen(sim, "GET /cluster/resources")).toBe(3)
      const m = (yield* metrics.snapshot).get("GET /cluster/resources")
      expect([m?.count, m?.errors, m?.retries]).toEqual([3, 2, 2])
    }))

  it.scopedLive("a 5xx forever fails after exactly the bound, with the attempt count in the error", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup({}, { retry: { attempts: 4, baseDelay: "2 millis", maxDelay: "10 millis" } })
      sim.faults.http({ method: "GET", path: "/nodes/*/status", status: 503, message: "Service Unavailable" })
      const error = apiError(yield* Effect.flip(api.nodeStatus("pve1")))
      expect([error.status, error.classification, error.attempts]).toEqual([503, "transient", 4])
      expect(error.message).toBe("GET /nodes/pve1/status: 503 Service Unavailable (transient, gave up after 4 attempts)")
      expect(seen(sim, "GET /nodes/{node}/status")).toBe(4)
    }))

  it.scopedLive("connection resets and a whole-API outage (596) are transient and retried", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      sim.faults.http({ path: "/version", kind: "reset", times: 2 })
      expect((yield* api.version()).release).toBe("9.0")
      sim.faults.apiUnavailable({ forMs: 30, mode: 596 })
      expect(yield* api.clusterStatus()).toHaveLength(4)
    }))

  it.scopedLive("a lock timeout (500 'got timeout') is transient and retried", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      sim.faults.lockTimeout({ method: "POST", path: "/nodes/*/qemu/*/status/start", times: 1 })
      const upid = yield* api.clone("pve1", 9000, { newid: 10002, name: "lock-test", full: true, storage: "local-lvm" })
      yield* api.waitTask("pve1", upid)
      yield* api.waitTask("pve1", yield* api.start("pve1", 10002))
      expect(seen(sim, "POST /nodes/{node}/qemu/{vmid}/status/start")).toBe(2)
      expect((yield* api.vmStatus("pve1", 10002)).instanceStatus).toBe("Running")
    }))
})

describe("definite failures are not retried", () => {
  it.scopedLive("400 parameter errors: permanent, one attempt, the message names the parameter", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      const error = apiError(yield* Effect.flip(api.clone("pve1", 9000, { newid: 99 })))
      expect([error.status, error.classification, error.attempts]).toEqual([400, "permanent", 1])
      expect(error.errors?.["newid"]).toMatch(/minimum value of 100/)
      expect(error.message).toMatch(/^POST \/nodes\/pve1\/qemu\/9000\/clone: 400 Parameter verification failed: newid: value must have a minimum value of 100/)
      expect(seen(sim, "POST /nodes/{node}/qemu/{vmid}/clone")).toBe(1)
    }))

  it.scopedLive("a wrong token: unauthorized, one attempt", () =>
    Effect.gen(function* () {
      const { sim } = yield* setup()
      const { api } = yield* clientFor(fastSettings(sim, { tokenSecret: "wrong" }))
      const error = apiError(yield* Effect.flip(api.version()))
      expect([error.status, error.classification, error.attempts, error.pveMessage]).toEqual([401, "unauthorized", 1, "Authentication failed!"])
      expect(sim.model.requests.filter((r) => r.status === 401)).toHaveLength(1)
    }))

  it.scopedLive("conflict (VMID taken), notFound (missing VM), permanent 500 (destroy a running VM)", () =>
    Effect.gen(function* () {
      const { api } = yield* setup()
      const conflict = apiError(yield* Effect.flip(api.clone("pve1", 9000, { newid: 9000, name: "dup" })))
      expect(conflict.classification).toBe("conflict")
      const missing = apiError(yield* Effect.flip(api.vmConfig("pve1", 424242)))
      expect([missing.classification, missing.status]).toEqual(["notFound", 500])
      expect(missing.pveMessage).toBe("Configuration file 'nodes/pve1/qemu-server/424242.conf' does not exist")
      yield* api.waitTask("pve1", yield* api.clone("pve1", 9000, { newid: 10003, name: "running", full: true, storage: "local-lvm" }))
      yield* api.waitTask("pve1", yield* api.start("pve1", 10003))
      const running = apiError(yield* Effect.flip(api.deleteVm("pve1", 10003)))
      expect([running.classification, running.attempts, running.pveMessage]).toEqual(["permanent", 1, "VM 10003 is running - destroy failed"])
    }))
})

describe("waitTask", () => {
  it.scopedLive("a failed task is TaskFailed carrying PVE's exit status", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      sim.faults.failTasks({ type: "qmclone", message: "clone failed: storage 'local-lvm' is full", times: 1 })
      const upid = yield* api.clone("pve1", 9000, { newid: 10004, name: "fails", full: true, storage: "local-lvm" })
      const error = yield* Effect.flip(api.waitTask("pve1", upid))
      expect(error._tag).toBe("TaskFailed")
      if (error._tag === "TaskFailed") {
        expect(error.exitstatus).toMatch(/storage 'local-lvm' is full/)
        expect([error.taskType, error.node, error.classification]).toEqual(["qmclone", "pve1", "permanent"])
      }
    }))

  it.scopedLive("WARNINGS: n is success", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      sim.faults.taskWarnings({ type: "qmstart", count: 2, times: 1 })
      yield* api.waitTask("pve1", yield* api.clone("pve1", 9000, { newid: 10005, name: "warn", full: true, storage: "local-lvm" }))
      const status = yield* api.waitTask("pve1", yield* api.start("pve1", 10005))
      expect(status.exitstatus).toBe("WARNINGS: 2")
    }))

  it.scopedLive("'no such task' right after submission is waited out; a bogus UPID fails after the grace", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup({}, { taskVisibilityGrace: "200 millis" })
      const upid = yield* api.clone("pve1", 9000, { newid: 10006, name: "late", full: true, storage: "local-lvm" })
      sim.faults.http({ method: "GET", path: "/nodes/*/tasks/*/status", status: 400, message: "no such task", times: 3 })
      expect((yield* api.waitTask("pve1", upid)).exitstatus).toBe("OK")
      expect(sim.faults.injected.filter((f) => f.kind === "http:status")).toHaveLength(3)
      const bogus = "UPID:pve1:00001234:00005678:6543210A:qmstart:123:nobody@pve:" as Upid
      const error = apiError(yield* Effect.flip(api.waitTask("pve1", bogus)))
      expect([error.status, error.classification, error.errors?.["upid"]]).toEqual([400, "notFound", "no such task"])
    }))

  it.scopedLive("a task still running at the bound is TaskTimeout", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      sim.faults.slowTasks({ type: "qmclone", factor: 1000, times: 1 })
      const upid = yield* api.clone("pve1", 9000, { newid: 10007, name: "slow", full: true, storage: "local-lvm" })
      const error = yield* Effect.flip(api.waitTask("pve1", upid, { timeout: "150 millis" }))
      expect(error._tag).toBe("TaskTimeout")
    }))

  it.scopedLive("a transient poll failure mid-task does not end the wait", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      sim.faults.slowTasks({ type: "qmclone", factor: 5, times: 1 })
      const upid = yield* api.clone("pve1", 9000, { newid: 10008, name: "blip", full: true, storage: "local-lvm" })
      sim.faults.http({ method: "GET", path: "/nodes/*/tasks/*/status", status: 502, message: "Bad Gateway", times: 6 })
      expect((yield* api.waitTask("pve1", upid)).exitstatus).toBe("OK")
    }))
})

describe("insecure_tls is per client", () => {
  it.scopedLive("false against a self-signed certificate: a clear TLS error; true: works; the strict client stays strict", () =>
    Effect.gen(function* () {
      const { sim, api: insecure } = yield* setup()
      const { api: strict } = yield* clientFor(fastSettings(sim, { insecureTls: false }))
      const before = apiError(yield* Effect.flip(strict.version()))
      expect([before.status, before.classification, before.attempts]).toEqual([0, "permanent", 1])
      expect(before.message).toMatch(/TLS certificate not trusted .*self.signed.*insecure_tls/i)
      expect((yield* insecure.version()).release).toBe("9.0")
      const after = apiError(yield* Effect.flip(strict.version()))
      expect(after.pveMessage).toBe(before.pveMessage)
      expect(process.env["NODE_TLS_REJECT_UNAUTHORIZED"]).toBeUndefined()
      // And a client that trusts the simulator's certificate explicitly verifies it and gets through.
      const certPem = Option.fromNullable(sim.tls?.certPem)
      expect(Option.isSome(certPem)).toBe(true)
      if (Option.isSome(certPem)) {
        const { api: trusting } = yield* clientFor(fastSettings(sim, { insecureTls: false, ca: certPem.value }))
        expect((yield* trusting.version()).release).toBe("9.0")
      }
    }))

  it.scopedLive("connection refused is transient and bounded", () =>
    Effect.gen(function* () {
      const { sim } = yield* setup()
      yield* Effect.promise(() => sim.close())
      const { api } = yield* clientFor(fastSettings(sim, { retry: { attempts: 3, baseDelay: "1 millis" } }))
      const error = apiError(yield* Effect.flip(api.version()))
      expect([error.status, error.classification, error.attempts]).toEqual([0, "transient", 3])
      expect(error.pveMessage).toMatch(/ECONNREFUSED/)
    }))
})
