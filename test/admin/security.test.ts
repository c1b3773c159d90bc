import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { callAdmin, connectAdmin } from "../../src/admin/AdminClient.js"
import { tokenMatches } from "../../src/rpc/AdminServer.js"
import { makeAdminWorld, TOKEN } from "./harness.js"
import { httpsRequest } from "../support/tls.js"

/** A POST trusting the world's cluster CA; a body the server cuts short answers what it answered (or status 0). */
const postWith = (ca: string) => (url: string, body: string, headers: Record<string, string> = {}) =>
  Effect.promise(() => httpsRequest(url, { body, headers, ca }).catch(() => ({ status: 0, text: "" })))

const statusRequest = `${JSON.stringify({ _tag: "Request", id: "1", tag: "Status", payload: null, headers: [] })}\n`

describe("admin endpoint security", () => {
  it.scopedLive("no token or a wrong token gets Unauthenticated and nothing else; the right one is served", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ lead: false })
      const post = postWith(world.pki.caPem)
      const url = `https://${world.leader.address}/admin`
      // Raw HTTP: 401 and a body naming only the error, whether the request is well-formed or not.
      const attempts: ReadonlyArray<Record<string, string>> = [{}, { authorization: "Bearer wrong-token-wrong-token" }, { authorization: Redacted.value(TOKEN) }, { authorization: "Bearer " }]
      for (const headers of attempts) {
        for (const body of [statusRequest, "garbage", "x".repeat(200_000)]) {
          const answer = yield* post(url, body, headers)
          expect(answer.status).toBe(401)
          expect(JSON.parse(answer.text)).toEqual({ _tag: "Unauthenticated" })
        }
      }
      // Through the client: a typed Unauthenticated.
      const wrong = yield* Effect.flip(callAdmin(world.leader.address, { ...world.credentials, token: Redacted.make("not-the-token-at-all") }, (rpc) => rpc.Status()))
      expect(wrong._tag).toBe("Unauthenticated")
      // A standby that is asked without the token does not even say it is a standby.
      const standby = yield* world.standby
      const standbyAnswer = yield* post(`https://${standby.address}/admin`, statusRequest)
      expect(standbyAnswer.status).toBe(401)
      // With the token: not the leader yet (no term published), so a typed NotLeader naming itself.
      const rpc = yield* world.client()
      const notYet = yield* Effect.flip(rpc.Status())
      expect(notYet).toMatchObject({ _tag: "NotLeader", leaderAddr: world.leader.address })
    }))

  it("tokens are compared whole: prefixes, suffixes and other lengths fail", () => {
    const token = Redacted.make("0123456789abcdef0123")
    expect(tokenMatches("Bearer 0123456789abcdef0123", token)).toBe(true)
    for (const header of [undefined, "", "Bearer ", "Bearer 0123456789abcdef012", "Bearer 0123456789abcdef01234", "0123456789abcdef0123", "bearer 0123456789abcdef0123"]) {
      expect(tokenMatches(header, token)).toBe(false)
    }
  })

  it.scopedLive("malformed and oversized payloads are typed errors naming the field, and the server keeps serving", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0, maxRequestBytes: 8 * 1024 })
      const post = postWith(world.pki.caPem)
      const rpc = yield* world.client()
      const cases: ReadonlyArray<readonly [Effect.Effect<unknown, unknown>, object]> = [
        [rpc.GetInstance({ instanceId: "x".repeat(500) }), { _tag: "PayloadTooLarge", field: "instanceId", maxLength: 64 }],
        [rpc.GetInstance({ instanceId: "NOT AN ID" }), { _tag: "InvalidPayload", field: "instanceId" }],
        [rpc.UpsertGroup({ tenant: "shop", group: "Bad Group", size: 1 }), { _tag: "InvalidPayload", field: "group" }],
        [rpc.UpsertGroup({ tenant: "shop", group: "web", size: -1 }), { _tag: "InvalidPayload", field: "size" }],
        [rpc.UpsertGroup({ tenant: "shop", group: "web", size: 1.5 }), { _tag: "InvalidPayload", field: "size" }],
        [rpc.UpsertGroup({ tenant: "t".repeat(300), group: "web" }), { _tag: "PayloadTooLarge", field: "tenant" }],
        [rpc.UpsertGroup({ tenant: "shop", group: "web", vars: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`v${i}`, "x"])) }), { _tag: "PayloadTooLarge", field: "vars" }],
        [rpc.UpsertGroup({ tenant: "shop", group: "new", size: 1 }), { _tag: "InvalidGroup" }],
        [rpc.UpsertGroup({ tenant: "shop", group: "new", template: "nope", size: 1 }), { _tag: "InvalidGroup" }],
        [rpc.UpsertGroup({ tenant: "shop", group: "web", template: "api" }), { _tag: "InvalidGroup" }]
      ]
      for (const [call, expected] of cases) {
        const error = yield* Effect.flip(call)
        expect(error).toMatchObject(expected)
      }
      // A body over the limit is HTTP 413, typed by the client.
      const tooBig = yield* Effect.flip(callAdmin(world.leader.address, world.credentials, (r) => r.UpsertGroup({ tenant: "shop", group: "web", vars: { big: "v".repeat(20_000) } })))
      expect(tooBig).toMatchObject({ _tag: "PayloadTooLarge", field: "body" })
      // The typed errors never echo the value sent.
      const invalid = yield* Effect.flip(rpc.GetInstance({ instanceId: "NOT AN ID" }))
      expect(JSON.stringify(invalid)).not.toContain("NOT AN ID")
      // Bodies that are not RPC messages: an error response, and the endpoint goes on serving.
      const url = `https://${world.leader.address}/admin`
      const bearer = { authorization: `Bearer ${Redacted.value(TOKEN)}` }
      const rawBodies = [
        "this is not json\n",
        "{\"_tag\":\"Request\"}\n",
        `${JSON.stringify({ _tag: "Request", id: "1", tag: "Nope", payload: {}, headers: [] })}\n`,
        `${JSON.stringify({ _tag: "Request", id: "2", tag: "GetInstance", payload: { instanceId: 5 }, headers: [] })}\n`,
        `${JSON.stringify({ _tag: "Request", id: "3", tag: "UpsertGroup", payload: { tenant: "shop", group: "web", size: "many" }, headers: [] })}\n`
      ]
      for (const body of rawBodies) {
        const answer = yield* post(url, body, bearer)
        expect(answer.status).toBeLessThan(500)
      }
      expect((yield* post(url, "y".repeat(100_000), bearer)).status).toBe(413)
      const status = yield* rpc.Status()
      expect(status).toMatchObject({ cluster: "acme", shard: "pve-a", leader: "replica-1", term: 1 })
    }))

  it.scopedLive("a standby answers NotLeader with the leader's address, and callAdmin follows it once", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0 })
      const standby = yield* world.standby
      const direct = yield* Effect.flip(Effect.flatMap(connectAdmin(standby.address, world.credentials), (c) => c.rpc.ListGroups()))
      expect(direct).toMatchObject({ _tag: "NotLeader", leaderAddr: world.leader.address })
      const followed = yield* callAdmin(standby.address, world.credentials, (rpc) => rpc.Status())
      expect(followed.address).toBe(world.leader.address)
      expect(followed.value.leader).toBe("replica-1")
      // ValidateConfig is answered by any replica: it reads the bucket, not the log.
      const validated = yield* callAdmin(standby.address, world.credentials, (rpc) => rpc.ValidateConfig())
      expect(followed.address).toBe(world.leader.address)
      expect(validated).toMatchObject({ address: standby.address, value: { valid: true, groups: 1 } })
    }))
})
