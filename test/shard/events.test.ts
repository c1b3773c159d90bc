import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Either, FastCheck, HashMap, Option } from "effect"
import {
  Adopted,
  Cloned,
  CloneRequested,
  Configured,
  decodeEvent,
  DeleteRequested,
  DrainStarted,
  RetirementRequested,
  encodeEvent,
  InstanceGone,
  InstanceRequested,
  CloneAbandoned,
  IsoDeleted,
  IsoUploaded,
  IsoUploadRequested,
  LeaderElected,
  NodeChosen,
  NonceIssued,
  Registered,
  CertificateRenewed,
  FileCertificatesIssued,
  Resized,
  ShardEvent,
  StartRequested,
  Started,
  StepFailed,
  TemplateResolved,
  VmDeleted,
  VmidsSeen,
  VmMismatched,
  VmStopped,
  LogIdentity
} from "../../src/domain/shard/events.js"
import {
  apply,
  decodeState,
  emptyState,
  encodeState,
  fold,
  startFold,
  getInstance,
  groupMembers,
  instancesByPhase,
  liveInstances,
  type State
} from "../../src/domain/shard/state.js"

const id = "webaaaaaaaaaaaaaaaaaaaaaaaaaa"
const at = 1_700_000_000_000

/** One of every event type, in a plausible order for one instance's life and death. */
const everyEvent: ReadonlyArray<ShardEvent> = [
  LeaderElected.make({ term: 3, replica: "r1" }),
  InstanceRequested.make({ instanceId: id, at, tenant: "t", group: "web", kind: "web", specHash: "h1", reason: "scale-up" }),
  NodeChosen.make({ instanceId: id, at: at + 1, node: "pve1" }),
  TemplateResolved.make({ instanceId: id, at: at + 2, templateVmid: 9000, templateNode: "pve2" }),
  IsoUploadRequested.make({ instanceId: id, at: at + 3, node: "pve1", storage: "local", volid: "local:iso/nstance-x.iso" }),
  IsoUploaded.make({ instanceId: id, at: at + 4, volid: "local:iso/nstance-x.iso" }),
  CloneRequested.make({ instanceId: id, at: at + 5, vmid: 1234, node: "pve1", templateVmid: 9000, templateNode: "pve2" }),
  Cloned.make({ instanceId: id, at: at + 6, vmid: 1234, node: "pve1" }),
  Configured.make({ instanceId: id, at: at + 7 }),
  Resized.make({ instanceId: id, at: at + 8, size: "32G" }),
  StartRequested.make({ instanceId: id, at: at + 9 }),
  Started.make({ instanceId: id, at: at + 10 }),
  Registered.make({ instanceId: id, at: at + 11, ips: ["10.0.0.5"], hostname: "web-1", certificateSerial: "0a1b2c" }),
  StepFailed.make({ instanceId: id, at: at + 12, step: "health", errorClass: "timeout", message: "no report", attempt: 2 }),
  RetirementRequested.make({ instanceId: id, at: at + 12, reason: "config-drift" }),
  DrainStarted.make({ instanceId: id, at: at + 12, deleteAt: at + 300_000 }),
  DeleteRequested.make({ instanceId: id, at: at + 13, reason: "not-ready" }),
  VmStopped.make({ instanceId: id, at: at + 14 }),
  IsoDeleted.make({ instanceId: id, at: at + 15, volid: "local:iso/nstance-x.iso" }),
  VmDeleted.make({ instanceId: id, at: at + 16, vmid: 1234 }),
  InstanceGone.make({ instanceId: id, at: at + 17 }),
  Adopted.make({ instanceId: "dbsbbbbbbbbbbbbbbbbbbbbbbbbbb", at: at + 18, vmid: 5000, node: "pve3", tenant: "t", kind: "dbs", status: "running" }),
  VmidsSeen.make({ highest: 7000 }),
  // Kept last so the indices above stay those of one instance's life.
  NonceIssued.make({ instanceId: "dbsbbbbbbbbbbbbbbbbbbbbbbbbbb", at: at + 19, nonceHash: "ab".repeat(32) }),
  LogIdentity.make({ logId: `log${"c".repeat(26)}`, at: at + 20 }),
  VmMismatched.make({
    instanceId: "dbsbbbbbbbbbbbbbbbbbbbbbbbbbb", at: at + 21, step: "start", vmid: 5000, node: "pve3", found: "db-primary", detail: "VM 5000 is named db-primary"
  }),
  CertificateRenewed.make({ instanceId: "dbsbbbbbbbbbbbbbbbbbbbbbbbbbb", at: at + 22, certificateSerial: "0a1b2d" }),
  FileCertificatesIssued.make({ instanceId: "dbsbbbbbbbbbbbbbbbbbbbbbbbbbb", at: at + 23, certificates: [{ file: "tls/web.crt", serial: "4f00", notAfter: at + 86_400_000 }] }),
  CloneAbandoned.make({ instanceId: "dbsbbbbbbbbbbbbbbbbbbbbbbbbbb", at: at + 24, vmid: 4999, node: "pve3", bootedAt: at + 23 })
]

const json = (value: unknown) => JSON.parse(JSON.stringify(value))

/** The state as plain, order-independent data: what equality of two states means. */
const view = (state: State) => json(encodeState(state))

describe("shard events", () => {
  it("covers every event type", () => {
    const tags = new Set(everyEvent.map((e) => e._tag))
    expect(tags.size).toBe(ShardEvent.members.length)
  })

  it.each(everyEvent.map((e) => [e._tag, e] as const))("%s survives encode → JSON → decode", (_tag, event) => {
    const encoded = encodeEvent(event)
    expect(Either.isRight(encoded)).toBe(true)
    if (Either.isLeft(encoded)) return
    expect(encoded.right.v).toBe(1)
    expect(decodeEvent(json(encoded.right))).toEqual(Either.right(event))
  })

  it("an unknown tag, an unknown version, an extra field or a bad field fails decoding", () => {
    const good = json(Either.getOrThrow(encodeEvent(everyEvent[1]!)))
    expect(Either.isRight(decodeEvent(good))).toBe(true)
    expect(Either.isLeft(decodeEvent({ ...good, _tag: "InstanceTeleported" }))).toBe(true)
    expect(Either.isLeft(decodeEvent({ ...good, v: 2 }))).toBe(true)
    expect(Either.isLeft(decodeEvent({ ...good, v: undefined }))).toBe(true)
    expect(Either.isLeft(decodeEvent({ ...good, colour: "blue" }))).toBe(true)
    expect(Either.isLeft(decodeEvent({ ...good, kind: "webs" }))).toBe(true)
    expect(Either.isLeft(decodeEvent({ ...good, reason: "whim" }))).toBe(true)
    expect(Either.isLeft(decodeEvent({ _tag: "LeaderElected", v: 1, term: 1.5, replica: "r" }))).toBe(true)
    expect(Either.isLeft(decodeEvent(null))).toBe(true)
  })

  it("encoding refuses an event that breaks its schema", () => {
    expect(Either.isLeft(encodeEvent(LeaderElected.make({ term: 1.5, replica: "r" }, { disableValidation: true })))).toBe(true)
  })
})

describe("the fold", () => {
  it("follows one instance through its phases, then forgets it", () => {
    const phases: Array<string | undefined> = []
    let state = emptyState
    for (const event of everyEvent.slice(0, 21)) {
      state = apply(state, event)
      phases.push(Option.getOrUndefined(getInstance(state, id))?.phase)
    }
    expect(phases).toEqual([
      undefined,
      "requested",
      "placed",
      "templated",
      "iso-uploading",
      "iso-ready",
      "cloning",
      "cloned",
      "configured",
      "configured",
      "starting",
      "running",
      "registered",
      "registered",
      // Retiring and draining: still registered (it serves until deleted).
      "registered",
      "registered",
      "deleting",
      "deleting",
      "deleting",
      "deleting",
      undefined
    ])
    expect(state.goneCount).toBe(1)
    expect(state.anomalies).toBe(0)
    expect(state.term).toBe(3)
    expect(state.leader).toBe("r1")
    expect(state.vmidHighWater).toBe(1234)
  })

  it("keeps the serial of the newest agent certificate: registration's, then each renewal's (a renewal before registration changes nothing)", () => {
    const life = everyEvent.slice(0, 12)
    const early = life.reduce(apply, emptyState)
    const ignored = apply(early, CertificateRenewed.make({ instanceId: id, at: at + 11, certificateSerial: "ff" }))
    expect(Option.getOrUndefined(getInstance(ignored, id))?.certificateSerial).toBeUndefined()
    const registered = apply(early, everyEvent[12]!)
    expect(Option.getOrUndefined(getInstance(registered, id))?.certificateSerial).toBe("0a1b2c")
    const renewed = apply(registered, CertificateRenewed.make({ instanceId: id, at: at + 12, certificateSerial: "0a1b2d" }))
    expect(Option.getOrUndefined(getInstance(renewed, id))?.certificateSerial).toBe("0a1b2d")
  })

  it("records what the saga and compensation need to resume", () => {
    const state = fold(everyEvent.slice(0, 20))
    const instance = Option.getOrThrow(getInstance(state, id))
    expect(instance).toMatchObject({
      tenant: "t",
      group: "web",
      node: "pve1",
      vmid: 1234,
      templateVmid: 9000,
      templateNode: "pve2",
      isoVolid: "local:iso/nstance-x.iso",
      diskSize: "32G",
      ips: ["10.0.0.5"],
      hostname: "web-1",
      failures: 1,
      lastError: { step: "health", errorClass: "timeout", attempt: 2 },
      deleteReason: "not-ready",
      retirement: { reason: "config-drift", at: at + 12 },
      drain: { startedAt: at + 12, deleteAt: at + 300_000 },
      cleanup: { vmStopped: true, isoDeleted: true, vmDeleted: true },
      requestedAt: at,
      startedAt: at + 10,
      registeredAt: at + 11,
      adopted: false
    })
  })

  it("adopts a VM by its PVE status and raises the VMID high-water mark from every source", () => {
    const state = fold(everyEvent)
    const adopted = Option.getOrThrow(getInstance(state, "dbsbbbbbbbbbbbbbbbbbbbbbbbbbb"))
    expect(adopted).toMatchObject({ phase: "running", adopted: true, reason: "adopted", vmid: 5000, tenant: "t", group: undefined })
    expect(state.vmidHighWater).toBe(7000)
    const stopped = apply(emptyState, Adopted.make({ instanceId: "x", at, vmid: 8000, node: "n", kind: "abc", status: "stopped" }))
    expect(Option.getOrThrow(getInstance(stopped, "x")).phase).toBe("configured")
    expect(stopped.vmidHighWater).toBe(8000)
    // A reservation raises the mark even when the instance is unknown (and that is an anomaly).
    const orphan = apply(emptyState, CloneRequested.make({ instanceId: "y", at, vmid: 9100, node: "n", templateVmid: 1, templateNode: "n" }))
    expect(orphan).toMatchObject({ vmidHighWater: 9100, anomalies: 1 })
    // The mark never goes down.
    expect(apply(orphan, VmidsSeen.make({ highest: 10 })).vmidHighWater).toBe(9100)
  })

  it("counts events for unknown instances, repeated creations and older terms as anomalies; a repeated creation holds its instance", () => {
    const base = fold(everyEvent.slice(0, 3))
    const after = fold(
      [
        NodeChosen.make({ instanceId: "nobody", at, node: "n" }),
        InstanceGone.make({ instanceId: "nobody", at }),
        InstanceRequested.make({ instanceId: id, at, tenant: "u", group: "g", kind: "web", specHash: "h", reason: "operator" }),
        LeaderElected.make({ term: 1, replica: "old" })
      ],
      base,
      7
    )
    expect(after.anomalies).toBe(4)
    expect(after.recentAnomalies.map((a) => [a.seq, a.event, a.held])).toEqual([
      [7, "NodeChosen", []], [7, "InstanceGone", []], [7, "InstanceRequested", [id]], [7, "LeaderElected", []]
    ])
    // Nothing else changed: the repeated creation did not replace the instance's group, only held it.
    const held = Option.getOrThrow(getInstance(after, id))
    expect(held.held).toEqual({ seq: 7, reason: `InstanceRequested for ${id}, which the log already has` })
    expect({ ...held, held: undefined }).toEqual({ ...Option.getOrThrow(getInstance(base, id)), held: undefined })
    const { anomalies: _a, recentAnomalies: _r, instances: _i, ...rest } = view(after)
    const { anomalies: _b, recentAnomalies: _s, instances: _j, ...restBase } = view(base)
    expect(rest).toEqual(restBase)
  })

  it("keeps a deleting instance deleting whatever late saga event arrives, and keeps the first delete reason", () => {
    const state = fold([
      everyEvent[1]!,
      DeleteRequested.make({ instanceId: id, at, reason: "scale-down" }),
      Started.make({ instanceId: id, at }),
      DeleteRequested.make({ instanceId: id, at, reason: "gc" })
    ])
    expect(Option.getOrThrow(getInstance(state, id))).toMatchObject({ phase: "deleting", deleteReason: "scale-down", startedAt: at })
  })

  it("keeps the newest nonce hash, and a registration that overtakes the start record", () => {
    const hash1 = "11".repeat(32)
    const hash2 = "22".repeat(32)
    const state = fold([
      ...everyEvent.slice(1, 5),
      NonceIssued.make({ instanceId: id, at: at + 3, nonceHash: hash1 }),
      // A resumed ISO step mints a fresh nonce: only the newest hash may register.
      NonceIssued.make({ instanceId: id, at: at + 4, nonceHash: hash2 }),
      ...everyEvent.slice(5, 11),
      // The guest registers while the start is still being recorded.
      Registered.make({ instanceId: id, at: at + 11, ips: ["10.20.1.4"], hostname: id }),
      Started.make({ instanceId: id, at: at + 12 })
    ])
    expect(Option.getOrThrow(getInstance(state, id))).toMatchObject({ phase: "registered", nonceHash: hash2, startedAt: at + 12, ips: ["10.20.1.4"] })
    // The hash survives a snapshot; the token was never there.
    const decoded = Either.getOrThrow(decodeState(json(encodeState(state))))
    expect(Option.getOrThrow(getInstance(decoded, id)).nonceHash).toBe(hash2)
  })

  it("read helpers group, filter and sort", () => {
    const mk = (instanceId: string, group: string) =>
      InstanceRequested.make({ instanceId, at, tenant: "t", group, kind: "web", specHash: "h", reason: "scale-up" })
    const state = fold([
      mk("c", "web"),
      mk("a", "web"),
      mk("b", "db"),
      mk("d", "web"),
      NodeChosen.make({ instanceId: "a", at, node: "n1" }),
      DeleteRequested.make({ instanceId: "d", at, reason: "scale-down" })
    ])
    expect(groupMembers(state, "t", "web").map((i) => i.id)).toEqual(["a", "c"])
    expect(groupMembers(state, "other", "web")).toEqual([])
    expect(liveInstances(state).map((i) => i.id)).toEqual(["a", "b", "c"])
    const byPhase = instancesByPhase(state)
    expect(byPhase.get("requested")?.map((i) => i.id)).toEqual(["b", "c"])
    expect(byPhase.get("placed")?.map((i) => i.id)).toEqual(["a"])
    expect(byPhase.get("deleting")?.map((i) => i.id)).toEqual(["d"])
    expect(byPhase.has("running")).toBe(false)
  })

  // Generated events over a small pool of instance IDs, so most events hit a known instance.
  const pool = ["abc0", "abc1", "abc2", "abc3", "abc4"]
  const eventArb: FastCheck.Arbitrary<ShardEvent> = FastCheck.tuple(Arbitrary.make(ShardEvent), FastCheck.constantFrom(...pool)).map(
    ([event, instanceId]) => ("instanceId" in event ? { ...event, instanceId } : event)
  )
  // Creations are frequent enough that lives get long.
  const requestArb = FastCheck.constantFrom(...pool).map((instanceId) =>
    InstanceRequested.make({ instanceId, at, tenant: "t", group: "g", kind: "abc", specHash: "h", reason: "scale-up" })
  )
  const eventsArb = FastCheck.array(FastCheck.oneof({ arbitrary: eventArb, weight: 4 }, { arbitrary: requestArb, weight: 1 }), { maxLength: 120 })

  it.prop("fold(prefix) then fold(tail) from there equals fold(all), and leaves the prefix state untouched", [eventsArb, FastCheck.nat()], ([events, cut]) => {
    const split = events.length === 0 ? 0 : cut % (events.length + 1)
    const prefix = fold(events.slice(0, split))
    const before = view(prefix)
    const whole = fold(events)
    expect(view(fold(events.slice(split), prefix))).toEqual(view(whole))
    expect(view(prefix)).toEqual(before)
  })

  it.prop("startFold fed segment by segment equals a fold per segment, and a state it returned stays untouched by later segments", [eventsArb, FastCheck.nat(), FastCheck.nat()], ([events, cutA, cutB]) => {
    const [a, b] = [cutA % (events.length + 1), cutB % (events.length + 1)].sort((x, y) => x - y) as [number, number]
    const folding = startFold()
    folding.add(events.slice(0, a), 1)
    folding.add(events.slice(a, b), 2)
    const middle = folding.state()
    const before = view(middle)
    folding.add(events.slice(b), 3)
    const perSegment = fold(events.slice(a, b), fold(events.slice(0, a), emptyState, 1), 2)
    expect(view(middle)).toEqual(view(perSegment))
    expect(view(folding.state())).toEqual(view(fold(events.slice(b), perSegment, 3)))
    expect(view(middle)).toEqual(before)
  })

  it.prop("fold is deterministic and equals reducing with apply", [eventsArb], ([events]) => {
    const a = fold(events)
    expect(view(fold(events))).toEqual(view(a))
    expect(view(events.reduce(apply, emptyState))).toEqual(view(a))
    expect(HashMap.size(a.instances)).toBeLessThanOrEqual(pool.length)
  })

  it.prop("a state survives its snapshot encoding", [eventsArb], ([events]) => {
    const state = fold(events.filter((e) => !("at" in e) || Number.isFinite(e.at)))
    const decoded = decodeState(json(encodeState(state)))
    expect(Either.isRight(decoded)).toBe(true)
    if (Either.isRight(decoded)) expect(view(decoded.right)).toEqual(view(state))
  })

  it("snapshot decoding is strict", () => {
    const encoded = json(encodeState(fold(everyEvent.slice(0, 5))))
    expect(Either.isRight(decodeState(encoded))).toBe(true)
    expect(Either.isLeft(decodeState({ ...encoded, v: 2 }))).toBe(true)
    expect(Either.isLeft(decodeState({ ...encoded, extra: 1 }))).toBe(true)
    expect(Either.isLeft(decodeState({ ...encoded, instances: [{ ...encoded.instances[0], phase: "flying" }] }))).toBe(true)
  })

  it("folds 100k events over 10k instances well under a second", () => {
    const events: Array<ShardEvent> = []
    const n = 10_000
    for (let i = 0; i < n; i++) {
      const instanceId = `web${String(i).padStart(26, "0")}`
      events.push(
        InstanceRequested.make({ instanceId, at: at + i, tenant: "t", group: `g${i % 10}`, kind: "web", specHash: "h", reason: "scale-up" }),
        NodeChosen.make({ instanceId, at, node: `pve${i % 3}` }),
        TemplateResolved.make({ instanceId, at, templateVmid: 9000, templateNode: "pve0" }),
        IsoUploadRequested.make({ instanceId, at, node: "pve1", storage: "local", volid: `local:iso/${instanceId}.iso` }),
        IsoUploaded.make({ instanceId, at, volid: `local:iso/${instanceId}.iso` }),
        CloneRequested.make({ instanceId, at, vmid: 1000 + i, node: "pve1", templateVmid: 9000, templateNode: "pve0" }),
        Cloned.make({ instanceId, at, vmid: 1000 + i, node: "pve1" }),
        Configured.make({ instanceId, at }),
        Started.make({ instanceId, at }),
        Registered.make({ instanceId, at, ips: ["10.0.0.1"] })
      )
    }
    const start = performance.now()
    const state = fold(events)
    const millis = performance.now() - start
    expect(HashMap.size(state.instances)).toBe(n)
    expect(state.vmidHighWater).toBe(1000 + n - 1)
    expect(instancesByPhase(state).get("registered")?.length).toBe(n)
    // Typically ~50 ms; the bound leaves room for a loaded CI machine.
    expect(millis).toBeLessThan(1000)
  })
})
