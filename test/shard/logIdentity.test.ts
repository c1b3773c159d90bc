/**
 * A shard event log's identity: minted once with the log, carried through snapshots and pruning, read back at
 * replay; a log written before identities gets one at its next open; and the managed notes that carry it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { ownerByNotes, parseManagedNotes, renderManagedNotes, upsertManagedNotes, withOwnerLog } from "../../src/domain/managedNotes.js"
import { LeaderElected, LogIdentity } from "../../src/domain/shard/events.js"
import { decodeState, encodeState, fold } from "../../src/domain/shard/state.js"
import { replayStore, segmentKey } from "../../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { enc, keysUnder, requested, startLog } from "./logSupport.js"

const LOG_A = `log${"a".repeat(26)}`
const LOG_B = `log${"b".repeat(26)}`

describe("log identity", () => {
  it("the fold keeps the first identity; a second, different one is an anomaly; a snapshot carries it", () => {
    const state = fold([LeaderElected.make({ term: 1, replica: "r" }), LogIdentity.make({ logId: LOG_A, at: 1 })])
    expect(state.logId).toBe(LOG_A)
    expect(fold([LogIdentity.make({ logId: LOG_A, at: 2 })], state)).toMatchObject({ logId: LOG_A, anomalies: 0 })
    expect(fold([LogIdentity.make({ logId: LOG_B, at: 2 })], state)).toMatchObject({ logId: LOG_A, anomalies: 1 })
    const decoded = decodeState(JSON.parse(JSON.stringify(encodeState(state))))
    expect(Either.map(decoded, (s) => s.logId)).toEqual(Either.right(LOG_A))
    // A snapshot from before identities still decodes, without one.
    const { logId: _dropped, ...old } = JSON.parse(JSON.stringify(encodeState(state)))
    expect(Either.map(decodeState(old), (s) => s.logId)).toEqual(Either.right(undefined))
  })

  it.effect("a new log mints it in its first segment; it survives snapshots and pruning and is read at replay", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const first = yield* startLog(store, { batchWindow: 0, snapshotEvery: 5, keepSegments: 2 })
      yield* first.log.open("r1", 1)
      const logId = (yield* first.log.state).logId
      expect(logId).toMatch(/^log[0-9a-hj-km-np-tv-z]{26}$/)
      const segment1 = new TextDecoder().decode((yield* store.get(segmentKey(1)).pipe(Effect.orDie)).body)
      expect(JSON.parse(segment1).events.map((e: { _tag: string }) => e._tag)).toEqual(["LeaderElected", "LogIdentity"])
      for (let i = 0; i < 30; i++) yield* first.log.append([requested(`abc${i}`)])
      yield* first.close
      // Segment 1 is long pruned; the snapshot carries the identity.
      expect(yield* keysUnder(store, "log/")).not.toContain(segmentKey(1))
      expect((yield* replayStore(store).pipe(Effect.orDie)).state.logId).toBe(logId)
      // The next leader keeps it, and writes no second one.
      const second = yield* startLog(store, { batchWindow: 0 })
      yield* second.log.open("r2", 2)
      expect((yield* second.log.state).logId).toBe(logId)
      yield* second.close
      const last = new TextDecoder().decode((yield* store.get(segmentKey(32)).pipe(Effect.orDie)).body)
      expect(JSON.parse(last).events.map((e: { _tag: string }) => e._tag)).toEqual(["LeaderElected"])
    }))

  it.effect("a log written before identities gets one at its next open, once", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      yield* store.put(segmentKey(1), enc.encode(JSON.stringify({ seq: 1, events: [{ _tag: "LeaderElected", v: 1, term: 1, replica: "old" }] }))).pipe(Effect.orDie)
      const next = yield* startLog(store, { batchWindow: 0 })
      yield* next.log.open("r2", 2)
      const logId = (yield* next.log.state).logId
      expect(logId).toMatch(/^log/)
      yield* next.close
      expect((yield* replayStore(store).pipe(Effect.orDie)).state).toMatchObject({ logId, anomalies: 0, term: 2 })
      // Two servers on two empty buckets never share one.
      const other = yield* startLog(makeMemoryStore(), { batchWindow: 0 })
      yield* other.log.open("r2", 1)
      expect((yield* other.log.state).logId).not.toBe(logId)
      yield* other.close
    }))
})

describe("the owner in the managed notes", () => {
  it("is rendered and read as `log`, and decides whose a VM is", () => {
    const notes = renderManagedNotes({ tenant: "shop", group: "web", log: LOG_A })
    expect(notes).toContain(`log: ${LOG_A}`)
    expect(parseManagedNotes(notes)?.log).toBe(LOG_A)
    expect(ownerByNotes(notes, LOG_A)).toEqual({ _tag: "ours" })
    expect(ownerByNotes(notes, LOG_B)).toEqual({ _tag: "other", logId: LOG_A })
    expect(ownerByNotes(renderManagedNotes({ tenant: "shop" }), LOG_A)).toEqual({ _tag: "unmarked" })
    expect(ownerByNotes(undefined, LOG_A)).toEqual({ _tag: "unmarked" })
    expect(ownerByNotes("operator text only", LOG_A)).toEqual({ _tag: "unmarked" })
  })

  it("withOwnerLog sets it in place, keeping the block's style and everything around it byte for byte", () => {
    const original = ["Ops: do not reboot.", "**DO NOT EDIT BELOW - managed by nstance**", "tenant: shop", "group: web", "**DO NOT EDIT ABOVE - managed by nstance**", "after"].join("\n")
    const stamped = withOwnerLog(original, LOG_A)
    expect(stamped).toBe(original.replace("group: web\n", `group: web\nlog: ${LOG_A}\n`))
    // Replaced, not added, the second time; ours in our own block style.
    expect(withOwnerLog(stamped, LOG_B)).toBe(original.replace("group: web\n", `group: web\nlog: ${LOG_B}\n`))
    const ours = upsertManagedNotes("Operator text", { tenant: "shop", log: LOG_A })
    expect(withOwnerLog(ours, LOG_B)).toBe(ours.replace(LOG_A, LOG_B))
    // No block: one is appended carrying only the owner.
    expect(parseManagedNotes(withOwnerLog("just text", LOG_A))).toEqual({ log: LOG_A })
    expect(withOwnerLog("just text", LOG_A).startsWith("just text\n\n")).toBe(true)
  })
})
