/**
 * PVE's error text has no size limit: a 10 MB task exit status was logged in full, stored in every
 * `StepFailed` (10 MB segments) and broke `nstance-admin status`. Every PVE message is cut to a few KB (the
 * head kept, the cut marked with the original length) after it is classified on the whole text, and a
 * redirect or an unexpected body is one short line rather than a schema dump.
 */
import { createServer } from "node:http"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { MAX_ERROR_TEXT } from "../../src/domain/errorText.js"
import { pveApiError } from "../../src/layers/pveCalls.js"
import type { StatusView } from "../../src/rpc/AdminRpc.js"
import { makeAdminWorld } from "../admin/harness.js"
import { clientFor, setup } from "./support.js"

const TEN_MB = 10 * 1024 * 1024
/** The original length a cut marker names. */
const cutFrom = (text: string) => Number(/\[cut: (\d+) characters\]/.exec(text)?.[1] ?? 0)
const huge = (tail = "") => `${"E".repeat(TEN_MB)}${tail}`

/** A loopback HTTP server answering every request with `status`, `headers` and `body`. */
const fakePve = (status: number, headers: Record<string, string>, body: string) =>
  Effect.acquireRelease(
    Effect.async<{ url: string; close: () => void }>((resume) => {
      const server = createServer((_, response) => {
        response.writeHead(status, headers)
        response.end(body)
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}/api2/json`, close: () => server.close() }))
      })
    }),
    (server) => Effect.sync(server.close)
  )

const clientOf = (url: string) =>
  clientFor({ apiUrl: url, tokenId: "nstance@pve!t", tokenSecret: "secret", retry: { attempts: 1 }, taskPoll: { initial: "2 millis", max: "20 millis" } })

describe("PVE error text is bounded", () => {
  it("a 10 MB message is classified on all of it, then kept to its head with the original length", () => {
    const spec = { method: "POST", template: "/nodes/{node}/qemu/{vmid}/status/start", path: "/nodes/pve1/qemu/100/status/start", decode: () => Effect.die("unused") } as const
    // The reason at the very end still decides: a lock timeout is transient.
    const error = pveApiError(spec, 1, 500, huge(" can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"), { cores: huge() })
    expect(error.classification).toBe("transient")
    expect(error.pveMessage.length).toBeLessThanOrEqual(MAX_ERROR_TEXT)
    expect(error.pveMessage).toMatch(/^EEEE.*… \[cut: \d+ characters\]$/)
    expect(cutFrom(error.pveMessage)).toBeGreaterThan(TEN_MB)
    expect(error.message.length).toBeLessThan(3 * MAX_ERROR_TEXT)
  })

  it.scopedLive("a task that fails with a 10 MB exit status is TaskFailed with a few KB of it", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      sim.faults.failTasks({ type: "qmclone", message: huge(), times: 1 })
      const upid = yield* api.clone("pve1", 9000, { newid: 10004, name: "fails", full: true, storage: "local-lvm" })
      const error = yield* Effect.flip(api.waitTask("pve1", upid))
      expect(error._tag).toBe("TaskFailed")
      expect(error.message.length).toBeLessThan(MAX_ERROR_TEXT)
      expect(cutFrom(error.message)).toBeGreaterThanOrEqual(TEN_MB)
    }), 20_000)

  it.scopedLive("a 500 whose body carries 10 MB is one bounded PveApiError", () =>
    Effect.gen(function* () {
      const server = yield* fakePve(500, { "content-type": "application/json" }, JSON.stringify({ message: huge(), data: null }))
      const { api } = yield* clientOf(server.url)
      const error = yield* Effect.flip(api.version())
      expect(error._tag).toBe("PveApiError")
      expect(error.message.length).toBeLessThan(MAX_ERROR_TEXT + 200)
    }))

  it.scopedLive("a 302 is one short line saying where it points, not a schema dump", () =>
    Effect.gen(function* () {
      const server = yield* fakePve(302, { location: "https://sso.example.com/login?next=/api2/json/version" }, "")
      const { api } = yield* clientOf(server.url)
      const error = yield* Effect.flip(api.version())
      expect(error).toMatchObject({ _tag: "PveApiError", status: 302, classification: "permanent" })
      expect(error.message).toMatch(/^GET \/version: 302 redirected to https:\/\/sso\.example\.com\/login\?next=\/api2\/json\/version: PROXMOX_API_URL must be the API itself/)
      expect(error.message.length).toBeLessThan(300)
      expect(error.message).not.toContain("\n")
    }))

  it.scopedLive("an answer of the wrong shape is one short line naming the field", () =>
    Effect.gen(function* () {
      const server = yield* fakePve(200, { "content-type": "application/json" }, JSON.stringify({ data: { release: { nested: "x".repeat(5000) } } }))
      const { api } = yield* clientOf(server.url)
      const error = yield* Effect.flip(api.version())
      expect(error._tag).toBe("PveDecodeError")
      expect(error.message.length).toBeLessThan(300)
      expect(error.message).not.toMatch(/Expected \{|\n/)
    }))
})

describe("a saga step failing with a 10 MB PVE message (admin endpoint on the simulator)", () => {
  it.scopedLive("the failure is stored cut to a few KB, segments stay small, and status and instances still answer", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 1, beforeLead: (sim) => { sim.faults.failTasks({ type: "qmclone", message: huge(), times: 1 }) } })
      const rpc = yield* world.client()
      // The failure is shown only until the compensation removes the instance: keep the answer that shows it.
      let seen: StatusView | undefined
      yield* world.waitUntil("the failed clone is in the status", Effect.map(rpc.Status(), (s) => {
        if (s.lastErrors.length > 0) seen = s
        return seen !== undefined
      }), "15 seconds")
      const failure = seen!.lastErrors[0]!
      expect(failure.step).toBe("clone")
      expect(failure.message.length).toBeLessThanOrEqual(MAX_ERROR_TEXT)
      // Cut once, where PVE's text was: the original length is what the marker says, and the UPID is kept.
      expect(cutFrom(failure.message)).toBeGreaterThanOrEqual(TEN_MB)
      expect(failure.message).toMatch(/\(UPID:[^)]+\)$/)
      const instances = yield* rpc.ListInstances({})
      for (const i of instances) expect((i.lastError?.message ?? "").length).toBeLessThanOrEqual(MAX_ERROR_TEXT)
      const sizes = yield* world.store.list("log/").pipe(Stream.map((meta) => meta.size), Stream.runCollect, Effect.orDie)
      expect(Math.max(...sizes)).toBeLessThan(16 * 1024)
    }), 30_000)
})
