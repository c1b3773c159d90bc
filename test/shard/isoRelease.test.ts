/**
 * `shard.infra.options.detach_iso_after_registration` on the simulator: once the log records an instance
 * registered, the leader ejects its cloud-init ISO from `ide2` and deletes the volume, recording
 * `IsoDeleted` (so the delete saga does not try again); with the option off both stay; a leader that dies
 * between the eject and the recorded delete is resumed by the next one.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, SubscriptionRef } from "effect"
import { Registered } from "../../src/domain/shard/events.js"
import { allInstances, type Instance } from "../../src/domain/shard/state.js"
import { EventLogStore } from "../../src/layers/EventLogStore.js"
import { EventLog } from "../../src/services/EventLog.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { EMPTY_CDROM } from "../../src/shard/isoRelease.js"
import { configText, ISO_STORAGE, makeWorld, parseConfig, type World } from "../support/simWorld.js"

const withOption = (on: boolean) =>
  parseConfig(configText({ size: 1, gcInterval: "1s" }).replace(
    `"cloud_init_iso_storage": "${ISO_STORAGE}"`,
    `"cloud_init_iso_storage": "${ISO_STORAGE}", "detach_iso_after_registration": ${on}`
  ))

/** One VM running under leader 1, which then stops; the log then records its registration (as the agent endpoint would). */
const registeredVm = Effect.gen(function* () {
  const w = yield* makeWorld({ size: 1, gcInterval: "1s" })
  const first = yield* w.leader(1, { config: yield* SubscriptionRef.make(withOption(false)) })
  yield* w.advanceUntil("1 running", Effect.map(w.state, (s) => (allInstances(s).some((i) => i.phase === "running") ? [] : ["not running yet"])))
  yield* Fiber.interrupt(first)
  const instance = allInstances(yield* w.state)[0]!
  // The log's batching waits on the clock: virtual time moves while it writes.
  yield* w.drive(Effect.gen(function* () {
    const log = yield* EventLog
    yield* log.open("registrar", 2)
    yield* log.append([Registered.make({ instanceId: instance.id, at: yield* w.now, ips: ["10.0.0.5"] })])
  }).pipe(Effect.provide(EventLogStore()), Effect.provideService(ObjectStore, w.store), Effect.scoped, Effect.orDie))
  return { w, instance }
})

const isoListed = (w: World, instance: Instance) => w.model.volume(instance.node!, instance.isoVolid!) !== undefined

describe("detach_iso_after_registration", () => {
  it.scoped("on: the registered VM's ide2 is an empty CD drive, the volume is gone, IsoDeleted is recorded once", () =>
    Effect.gen(function* () {
      const { w, instance } = yield* registeredVm
      expect(w.model.vms.get(instance.vmid!)?.config.get("ide2")).toBe(`${instance.isoVolid},media=cdrom`)
      expect(isoListed(w, instance)).toBe(true)
      yield* w.leader(3, { config: yield* SubscriptionRef.make(withOption(true)) })
      yield* w.advanceUntil("ISO released", Effect.map(w.state, (s) => (allInstances(s)[0]?.cleanup.isoDeleted === true ? [] : ["not yet"])))
      yield* w.advance("5 seconds")
      expect(w.model.vms.get(instance.vmid!)?.config.get("ide2")).toBe(EMPTY_CDROM)
      expect(isoListed(w, instance)).toBe(false)
      const recorded = (yield* w.events).filter((e) => e._tag === "IsoDeleted")
      expect(recorded.map((e) => ("volid" in e ? e.volid : ""))).toEqual([instance.isoVolid])
      expect(allInstances(yield* w.state).map((i) => [i.id, i.phase])).toEqual([[instance.id, "registered"]])
    }))

  it.scoped("off: the ISO stays attached and on storage", () =>
    Effect.gen(function* () {
      const { w, instance } = yield* registeredVm
      yield* w.leader(3, { config: yield* SubscriptionRef.make(withOption(false)) })
      yield* w.advance("10 seconds")
      expect(w.model.vms.get(instance.vmid!)?.config.get("ide2")).toBe(`${instance.isoVolid},media=cdrom`)
      expect(isoListed(w, instance)).toBe(true)
      expect((yield* w.events).filter((e) => e._tag === "IsoDeleted")).toEqual([])
    }))

  it.scoped("a leader that dies while the volume is being deleted is resumed by the next", () =>
    Effect.gen(function* () {
      const { w, instance } = yield* registeredVm
      const config = yield* SubscriptionRef.make(withOption(true))
      yield* w.crashLeader(3, { task: "imgdel" }, { config })
      // Ejected, not recorded.
      expect(w.model.vms.get(instance.vmid!)?.config.get("ide2")).toBe(EMPTY_CDROM)
      expect((yield* w.events).filter((e) => e._tag === "IsoDeleted")).toEqual([])
      yield* w.leader(4, { config })
      yield* w.advanceUntil("ISO released", Effect.map(w.state, (s) => (allInstances(s)[0]?.cleanup.isoDeleted === true ? [] : ["not yet"])))
      expect(isoListed(w, instance)).toBe(false)
      expect((yield* w.events).filter((e) => e._tag === "IsoDeleted")).toHaveLength(1)
    }))
})
