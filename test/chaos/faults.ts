/**
 * The fault schedule of a chaos world, drawn from its seed: replicas crashed (also right before or after a
 * log write, i.e. mid-saga) and restarted with the same or another id, PVE 5xx, lock timeouts, slow and
 * failing tasks, VMIDs taken behind our back, nodes offline, the API away, store errors, ambiguous store
 * writes, store latency and partitions, lease expiry by clock jumps, VMs stopped or deleted behind our
 * back, the ISO storage full, config pushes; in worlds that roll out, user-data changes and drain
 * acknowledgements too (rollout.ts); and in every world the narrow-window faults of issue 26 (`narrowFaults`:
 * paused leaders, late-landing writes, lost answers, quorum loss, token trouble, cfs-lock timeouts, full
 * storage, a loaded pveproxy, operators' VMs at our VMIDs, scale-down while a clone runs) and operators' VMs
 * from the start (`foreignAtStart`). A fault that lasts ends on a fiber of the fault scope, which
 * `stopFaults` closes.
 */
import { Duration, Effect, Exit, Scope } from "effect"
import type { ReplicaLifecycle } from "./lifecycle.js"
import { rolloutFaults } from "./rollout.js"
import { makePrng } from "../../src/sim/prng.js"
import { drawSizes, pick } from "./shape.js"
import { type ChaosWorld, pushConfig, type Replica } from "./state.js"

export interface Fault {
  readonly name: string
  readonly run: Effect.Effect<void>
}

export interface PlannedFault {
  /** Virtual milliseconds after the start. */
  readonly at: number
  readonly fault: Fault
}

const TASK_TYPES = ["qmclone", "qmconfig", "qmstart", "qmstop", "qmshutdown", "qmdestroy", "imgcopy", "resize"] as const
const HTTP_PATHS = [
  "/nodes/*/qemu/*/clone", "/nodes/*/qemu/*/config", "/nodes/*/qemu/*/status/*", "/nodes/*/qemu/*",
  "/nodes/*/storage/*/upload", "/nodes/*/storage/*/content/**", "/cluster/resources", "/nodes/*/tasks/*/status", "/nodes/*/qemu"
]

/** The faults of the world, in time order; lasting ones end on fibers of `faultScope`. */
export const planFaults = (w: ChaosWorld, lifecycle: ReplicaLifecycle, faultScope: Scope.Scope): Array<PlannedFault> => {
  const { prng, shardPrng, replicas, shards, model, simPve, faults, storeFaults, say } = w
  const { twoShards, totalReplicas, storm } = w.shape
  const { crash, startReplica, freshId } = lifecycle
  const leaderSlot = () => {
    // Two shards: the leader of one of them (terms of different shards are not comparable).
    const of = twoShards ? shards[shardPrng.int(0, shards.length - 1)]! : undefined
    const leading = replicas.filter((r): r is Replica => r !== undefined && r.leaderTerm !== undefined && (of === undefined || of.slots.includes(r.slot)))
    const newest = leading.sort((a, b) => (b.leaderTerm ?? 0) - (a.leaderTerm ?? 0))[0]
    return newest?.slot
  }
  const anySlot = () => prng.int(0, totalReplicas - 1)
  const ourVms = () =>
    [...model.vms.values()].filter((vm) => vm.config.get("template") !== "1" && !(vm.config.get("name") ?? "").startsWith("foreign"))
  let foreignCount = 0
  /** Behind our back: a PVE client of the operator's, not recorded as ours. */
  const operator = <A, E>(effect: Effect.Effect<A, E>) => Effect.forkIn(Effect.ignore(effect), w.worldScope)

  const drawFault = (): Fault => {
    const kind = pick(prng, [
      "crash", "crash", "crashAtWrite", "crashAtWrite", "pve5xx", "pve5xx", "lockTimeout", "slowTasks", "failTasks", "failTasks",
      "vmidRace", "nodeOffline", "apiAway", "storeErrors", "ambiguous", "ambiguous", "storeLatency", "partition", "clockJump",
      "wallJump", "killVm", "deleteVm", "isoFull", "configPush", "configPush"
    ])
    switch (kind) {
      case "crash": {
        const target = prng.next() < 0.6 ? "leader" : "any"
        const delayMs = prng.int(0, 40) * 1000
        const sameId = prng.next() < 0.5
        const graceful = prng.next() < 0.3
        return {
          name: `crash ${target}, restart after ${delayMs / 1000}s with ${sameId ? "the same" : "a new"} id`,
          run: Effect.gen(function* () {
            const slot = target === "leader" ? leaderSlot() ?? anySlot() : anySlot()
            const r = replicas[slot]
            if (r === undefined) return
            yield* crash(slot, "crash")
            yield* Effect.sleep(Duration.millis(delayMs)).pipe(
              Effect.zipRight(Effect.suspend(() => replicas[slot] === undefined ? startReplica(slot, sameId ? r.id : freshId(slot), graceful) : Effect.void)),
              Effect.forkIn(faultScope)
            )
          })
        }
      }
      case "crashAtWrite": {
        const k = prng.int(1, 12)
        const mode = prng.next() < 0.5 ? "before" as const : "after" as const
        const delayMs = prng.int(0, 30) * 1000
        const sameId = prng.next() < 0.5
        return {
          name: `crash the leader ${mode} its ${k}th next log write, restart after ${delayMs / 1000}s`,
          run: Effect.gen(function* () {
            const slot = leaderSlot()
            if (slot === undefined) return
            const r = replicas[slot]!
            w.crashTrigger = { who: r.who, remaining: k, mode }
            // The restart waits for the crash (or gives up when the trigger never fires).
            yield* Effect.gen(function* () {
              for (let i = 0; i < 600 && replicas[slot]?.who === r.who; i++) yield* Effect.sleep("1 second")
              if (replicas[slot] !== undefined) return
              yield* Effect.sleep(Duration.millis(delayMs))
              if (replicas[slot] === undefined) yield* startReplica(slot, sameId ? r.id : freshId(slot), prng.next() < 0.3)
            }).pipe(Effect.forkIn(faultScope))
          })
        }
      }
      case "pve5xx": {
        const path = pick(prng, HTTP_PATHS)
        const status = pick(prng, [500, 500, 503, 596])
        const probability = pick(prng, [0.1, 0.3, 0.6, 1])
        const times = prng.int(1, 12)
        return { name: `PVE ${status} on ${path} p=${probability} ×${times}`, run: Effect.sync(() => void faults.http({ path, status, probability, times })) }
      }
      case "lockTimeout": {
        const path = pick(prng, ["/nodes/*/qemu/*/config", "/nodes/*/qemu/*/status/start", "/nodes/*/qemu/*", "/nodes/*/qemu/*/resize"])
        const times = prng.int(1, 3)
        return { name: `lock timeouts on ${path} ×${times}`, run: Effect.sync(() => void faults.lockTimeout({ path, probability: 0.5, times })) }
      }
      case "slowTasks": {
        const type = pick(prng, TASK_TYPES)
        const factor = prng.int(2, 30)
        const times = prng.int(1, 4)
        return { name: `slow ${type} ×${factor} (${times} tasks)`, run: Effect.sync(() => void faults.slowTasks({ type, factor, times })) }
      }
      case "failTasks": {
        const type = pick(prng, TASK_TYPES)
        const times = prng.int(1, 3)
        return { name: `failing ${type} tasks ×${times}`, run: Effect.sync(() => void faults.failTasks({ type, times })) }
      }
      case "isoFull": {
        const times = prng.int(1, 6)
        return {
          name: `ISO storage full ×${times}`,
          run: Effect.sync(() => {
            faults.failTasks({ type: "imgcopy", times, message: "write failed: No space left on device" })
          })
        }
      }
      case "vmidRace": {
        const ahead = prng.int(1, 3)
        return {
          name: `a VMID taken behind our back (+${ahead} above the highest)`,
          run: Effect.suspend(() => {
            const highest = Math.max(99, ...[...model.vms.keys()].filter((v) => v < 9000))
            const newid = highest + ahead
            const node = [...model.nodes.keys()][0]!
            const name = `foreign-${++foreignCount}`
            say(`fault: operator clones ${name} as VMID ${newid}`)
            return operator(simPve.clone(node, 9000, { newid, name, full: true, storage: "local-lvm" }).pipe(Effect.flatMap((upid) => simPve.waitTask(node, upid))))
          }).pipe(Effect.asVoid)
        }
      }
      case "nodeOffline": {
        const node = `pve${prng.int(1, w.shape.nodes)}`
        const forMs = prng.int(10, 90) * 1000
        return {
          name: `${node} offline for ${forMs / 1000}s`,
          run: Effect.gen(function* () {
            faults.nodeOffline(node)
            yield* Effect.sleep(Duration.millis(forMs)).pipe(Effect.zipRight(Effect.sync(() => faults.nodeOnline(node))), Effect.forkIn(faultScope))
          })
        }
      }
      case "apiAway": {
        const forMs = prng.int(5, 40) * 1000
        const mode = pick(prng, ["reset", 503, 596] as const)
        return { name: `PVE API away (${mode}) for ${forMs / 1000}s`, run: Effect.sync(() => faults.apiUnavailable({ forMs, mode })) }
      }
      case "storeErrors":
      case "ambiguous":
      case "storeLatency": {
        const forMs = prng.int(5, 60) * 1000
        const level = kind === "storeLatency" ? prng.int(100, 3000) : pick(prng, [0.05, 0.2, 0.5])
        return {
          name: `store ${kind} ${level} for ${forMs / 1000}s`,
          run: Effect.gen(function* () {
            if (kind === "storeErrors") storeFaults.errorRate = level
            else if (kind === "ambiguous") storeFaults.ambiguousRate = level
            else storeFaults.latencyMs = level
            yield* Effect.sleep(Duration.millis(forMs)).pipe(
              Effect.zipRight(Effect.sync(() => {
                if (kind === "storeErrors") storeFaults.errorRate = 0
                else if (kind === "ambiguous") storeFaults.ambiguousRate = 0
                else storeFaults.latencyMs = 0
              })),
              Effect.forkIn(faultScope)
            )
          })
        }
      }
      case "partition": {
        const forMs = prng.int(10, 60) * 1000
        return {
          name: `the leader cut off from the store for ${forMs / 1000}s (its lease expires)`,
          run: Effect.gen(function* () {
            const slot = leaderSlot()
            if (slot === undefined) return
            const who = replicas[slot]!.who
            storeFaults.partitioned.add(who)
            yield* Effect.sleep(Duration.millis(forMs)).pipe(Effect.zipRight(Effect.sync(() => storeFaults.partitioned.delete(who))), Effect.forkIn(faultScope))
          })
        }
      }
      case "clockJump": {
        const jumpMs = prng.int(5, 60) * 1000
        return {
          name: `the leader's monotonic clock jumps ${jumpMs / 1000}s ahead (its lease expires early)`,
          run: Effect.sync(() => {
            const slot = leaderSlot()
            if (slot !== undefined) replicas[slot]!.skew.mono += jumpMs
          })
        }
      }
      case "wallJump": {
        const jumpMs = pick(prng, [-1, 1]) * prng.int(1, 7200) * 1000
        return {
          name: `a replica's wall clock jumps ${jumpMs / 1000}s`,
          run: Effect.sync(() => {
            const r = replicas[anySlot()]
            if (r !== undefined) r.skew.wall += jumpMs
          })
        }
      }
      case "killVm":
      case "deleteVm": {
        const n = prng.int(0, 1000)
        return {
          name: kind === "killVm" ? "a VM stopped behind our back" : "a VM deleted behind our back",
          run: Effect.suspend(() => {
            const vms = ourVms().filter((vm) => vm.status === "running")
            if (vms.length === 0) return Effect.void
            const vm = vms[n % vms.length]!
            say(`fault: operator ${kind === "killVm" ? "stops" : "deletes"} VM ${vm.vmid} (${vm.config.get("name") ?? "?"})`)
            const stop = simPve.stop(vm.node, vm.vmid).pipe(Effect.flatMap((upid) => simPve.waitTask(vm.node, upid)))
            // As `qm destroy --purge --destroy-unreferenced-disks`: the simulator keeps a cloud-init drive
            // replaced by our ISO as an unreferenced volume, which real PVE frees on replacement.
            const remove = simPve.deleteVm(vm.node, vm.vmid, { purge: true, destroyUnreferencedDisks: true }).pipe(Effect.flatMap((upid) => simPve.waitTask(vm.node, upid)))
            return operator(kind === "killVm" ? stop : Effect.zipRight(stop, remove))
          }).pipe(Effect.asVoid)
        }
      }
      default: {
        const sizes = drawSizes(prng, storm)
        const shard = twoShards ? shards[shardPrng.int(0, shards.length - 1)]! : shards[0]!
        return {
          name: `config push${twoShards ? ` to ${shard.id}` : ""}: web=${sizes.web} api=${sizes.api}`,
          run: Effect.suspend(() => {
            shard.world = { ...shard.world, sizes }
            return pushConfig(w, shard)
          })
        }
      }
    }
  }

  const faultCount = storm ? prng.int(15, 35) : prng.int(3, 14)
  const drawn = Array.from({ length: faultCount }, () => ({ at: prng.int(5, w.shape.chaosMs / 1000) * 1000, fault: drawFault() }))
  return [...drawn, ...rolloutFaults(w, faultScope), ...narrowFaults(w, faultScope), ...rebootFaults(w), ...partialTaskFaults(w)].sort((a, b) => a.at - b.at)
}

const CLONE = "/nodes/*/qemu/*/clone"
const QEMU_WRITES: ReadonlyArray<{ readonly method: string; readonly path: string }> = [
  { method: "POST", path: "/nodes/*/qemu/**" },
  { method: "PUT", path: "/nodes/*/qemu/**" },
  { method: "DELETE", path: "/nodes/*/qemu/**" },
  { method: "POST", path: "/nodes/*/storage/*/upload" },
  { method: "DELETE", path: "/nodes/*/storage/*/content/**" }
]

/** The next VMID the shard's allocator would pick: above every VMID of its range in the cluster. */
const nextOurVmid = (w: ChaosWorld): number => Math.max(9999, ...[...w.model.vms.keys()].filter((v) => v >= 10_000)) + 1

/**
 * An operator's VM (not ours) cloned at `vmid`: its VMID counts as foreign from the call on (a nameless,
 * locked placeholder first), and no more once the clone failed.
 */
const foreignVm = (w: ChaosWorld, vmid: number, why: string) =>
  Effect.suspend(() => {
    if (w.model.vms.has(vmid)) return Effect.void
    const node = [...w.model.nodes.keys()][0]!
    const name = `foreign-${vmid}`
    w.foreignVmids.add(vmid)
    w.say(`fault: operator clones ${name} as VMID ${vmid} (${why})`)
    return w.simPve.clone(node, 9000, { newid: vmid, name, full: true, storage: "local-lvm" }).pipe(
      Effect.flatMap((upid) => w.simPve.waitTask(node, upid)),
      Effect.tapError(() => Effect.sync(() => { if (!w.model.vms.has(vmid)) w.foreignVmids.delete(vmid) })),
      Effect.ignore,
      Effect.forkIn(w.worldScope),
      Effect.asVoid
    )
  })

/**
 * VMs that are not ours in every world, from the start: an operator's, in the shard's VMID range, where the
 * allocator must step around them and no saga may touch them.
 */
export const foreignAtStart = (w: ChaosWorld): Effect.Effect<void> => {
  const r = makePrng(w.shape.seed * 89 + 23)
  const vmids = [...new Set(Array.from({ length: r.int(1, 2) }, () => 10_000 + r.int(0, 3)))]
  return Effect.forEach(vmids, (vmid) => foreignVm(w, vmid, "in the shard's VMID range"), { discard: true })
}

/**
 * Faults timed at the moments that matter, drawn from a stream of their own (every other draw of the seed
 * stays as it was): a leader paused as its clone goes out or after it took effect, as its delete's first call
 * goes out, as it appends to the log, or in the first calls of a newer term (right after a lease change) —
 * each longer than the lease timeout, so another replica leads when it resumes; late-landing store writes;
 * PVE answers lost after the effect; quorum lost; the API token refused or short of a privilege; storage
 * `cfs-lock` timeouts and full image storage; a loaded pveproxy; an operator's VM at the VMID the allocator
 * picks next, or at the VMID of one of ours just deleted behind our back; a group scaled down while its clone runs.
 */
const narrowFaults = (w: ChaosWorld, faultScope: Scope.Scope): Array<PlannedFault> => {
  const r = makePrng(w.shape.seed * 97 + 13)
  const { faults, storeFaults, replicas } = w
  const leaderWho = () => {
    const leading = replicas.filter((x): x is Replica => x !== undefined && x.leaderTerm !== undefined)
    return leading.sort((a, b) => (b.leaderTerm ?? 0) - (a.leaderTerm ?? 0))[0]?.who
  }
  const forAWhile = (forMs: number, undo: () => void) =>
    Effect.asVoid(Effect.forkIn(Effect.sleep(Duration.millis(forMs)).pipe(Effect.zipRight(Effect.sync(undo))), faultScope))
  const draw = (): Fault => {
    const kind = pick(r, [
      "pauseAtClone", "pauseAtClone", "pauseAtDelete", "pauseAtDelete", "pauseAtAppend", "pauseAtAppend", "pauseNewTerm", "pauseNewTerm",
      "latePartition", "lostAnswer", "lostAnswer", "quorumLoss", "token", "cfsLock", "storageFull", "slowRequests",
      "foreignNext", "vmidReuse", "scaleDownAtClone", "scaleDownAtClone"
    ])
    const forMs = r.int(16, 60) * 1000
    const lagMs = r.int(0, 3000)
    switch (kind) {
      case "pauseAtClone":
      case "pauseAtDelete":
      case "pauseAtAppend":
      case "pauseNewTerm": {
        const drawnOps = kind === "pauseAtClone" ? ["clone"] : kind === "pauseAtDelete" ? ["stop", "shutdown", "deleteVm", "deleteVolume"] : kind === "pauseAtAppend" ? ["append"] : [...MUTATION_OPS, "append"]
        const drawnMode = kind === "pauseAtAppend" ? "before" as const : pick(r, ["before", "after"] as const)
        // Pauses at PVE calls find two gaps the product has today (see `RunOptions.pvePauses`): off, they pause
        // at the next log append instead (the same draws, so a seed's world is the same either way otherwise).
        const ops = w.pvePauses ? drawnOps : ["append"]
        const mode = w.pvePauses ? drawnMode : "before" as const
        return {
          name: `pause the next leader ${kind === "pauseNewTerm" ? "of a newer term " : ""}${mode === "before" ? "as" : "right after"} its ${ops.join("/")} ${mode === "before" ? "goes out" : "takes effect"}, for ${forMs / 1000}s (lease timers ${lagMs} ms later)`,
          run: Effect.sync(() => {
            w.pauseTrigger = { ops: new Set(ops), mode, forMs, lagMs, minTerm: kind === "pauseNewTerm" ? Math.max(0, ...[...w.logFacts.values()].map((f) => f.term)) + 1 : 0 }
          })
        }
      }
      case "latePartition":
        return {
          name: `the leader cut off from the store for ${forMs / 1000}s, its writes landing when healed`,
          run: Effect.suspend(() => {
            const who = leaderWho()
            if (who === undefined) return Effect.void
            storeFaults.lateLanding.add(who)
            return forAWhile(forMs, () => storeFaults.lateLanding.delete(who))
          })
        }
      case "lostAnswer": {
        const path = pick(r, [CLONE, CLONE, "/nodes/*/qemu/*/config", "/nodes/*/qemu/*/status/*", "/nodes/*/qemu/*", "/nodes/*/storage/*/upload", "/nodes/*/storage/*/content/**"])
        const status = pick(r, [0, 500, 596])
        const times = r.int(1, 4)
        return { name: `PVE answers lost after the effect (${status === 0 ? "reset" : status}) on ${path} ×${times}`, run: Effect.sync(() => void faults.lostAnswer({ path, status, probability: 0.7, times })) }
      }
      case "quorumLoss":
        return {
          name: `quorum lost for ${forMs / 1000}s (/etc/pve read-only: config writes, creates and deletes fail)`,
          run: Effect.suspend(() => {
            const handles = QEMU_WRITES.map((q) => faults.http({ ...q, status: 500, message: "cluster not ready - no quorum? (500)" }))
            return forAWhile(forMs, () => handles.forEach((h) => h.remove()))
          })
        }
      case "token": {
        const refused = r.next() < 0.5
        return {
          name: refused ? `the API token expired for ${forMs / 1000}s (401)` : `the API token lost VM.Config.Disk for ${forMs / 1000}s (403)`,
          run: Effect.suspend(() => {
            const handles = refused
              ? [faults.http({ path: "/**", status: 401, message: "authentication failure" })]
              : [faults.http({ method: "PUT", path: "/nodes/*/qemu/*/**", status: 403, message: "Permission check failed (/vms/*, VM.Config.Disk)" }), faults.http({ method: "POST", path: CLONE, status: 403, message: "Permission check failed (/vms/*, VM.Clone)" })]
            return forAWhile(forMs, () => handles.forEach((h) => h.remove()))
          })
        }
      }
      case "cfsLock": {
        const path = pick(r, [CLONE, "/nodes/*/qemu/*/resize", "/nodes/*/qemu/*", "/nodes/*/storage/*/upload"])
        const times = r.int(1, 4)
        return { name: `cfs-lock timeouts on ${path} ×${times}`, run: Effect.sync(() => void faults.http({ path, status: 500, message: "cfs-lock 'storage-local-lvm' error: got lock request timeout", probability: 0.6, times })) }
      }
      case "storageFull": {
        const type = pick(r, ["qmclone", "resize"])
        const times = r.int(1, 4)
        return { name: `image storage full for ${type} ×${times}`, run: Effect.sync(() => void faults.failTasks({ type, times, message: "lvcreate 'pve/vm-disk' error:   Volume group \"pve\" has insufficient free space" })) }
      }
      case "slowRequests": {
        const maxMs = pick(r, [500, 2000, 8000])
        return { name: `pveproxy loaded for ${forMs / 1000}s (each request waits up to ${maxMs} ms)`, run: Effect.sync(() => faults.slowRequests({ forMs, minMs: 20, maxMs })) }
      }
      case "foreignNext":
        return { name: "an operator's VM at the VMID the allocator picks next", run: Effect.suspend(() => foreignVm(w, nextOurVmid(w), "the next VMID of the shard's range")) }
      case "vmidReuse":
        return {
          name: "one of our VMs deleted behind our back and its VMID given to an operator's VM",
          run: Effect.suspend(() => {
            const ours = [...w.model.vms.values()].filter((vm) => vm.vmid >= 10_000 && !w.foreignVmids.has(vm.vmid) && vm.status === "running" && vm.config.get("template") !== "1")
            if (ours.length === 0) return Effect.void
            const vm = ours[r.int(0, ours.length - 1)]!
            w.say(`fault: operator deletes VM ${vm.vmid} (${vm.config.get("name") ?? "?"}) to reuse its VMID`)
            const pve = w.simPve
            // The new VM comes a while later (another tool's create taking the lowest free VMID): within the
            // VM-loss grace and the listing's lag, not inside the few milliseconds between a saga's look and its call.
            const laterMs = r.int(12, 40) * 1000
            return pve.stop(vm.node, vm.vmid).pipe(
              Effect.flatMap((upid) => pve.waitTask(vm.node, upid)),
              Effect.zipRight(pve.deleteVm(vm.node, vm.vmid, { purge: true, destroyUnreferencedDisks: true })),
              Effect.flatMap((upid) => pve.waitTask(vm.node, upid)),
              Effect.zipRight(Effect.sleep(Duration.millis(laterMs))),
              Effect.zipRight(foreignVm(w, vm.vmid, "a VMID one of ours had")),
              Effect.ignore,
              Effect.forkIn(w.worldScope),
              Effect.asVoid
            )
          })
        }
      default:
        return { name: "a group scaled down as its next clone starts (slowed), its leader crashing once the clone went out", run: Effect.sync(() => { w.scaleDownAtClone = true }) }
    }
  }
  const count = w.shape.storm ? r.int(3, 8) : r.int(2, 5)
  return Array.from({ length: count }, () => ({ at: r.int(5, w.shape.chaosMs / 1000) * 1000, fault: draw() }))
}

/**
 * One world in four has a node reboot (a stream of its own: the other draws of the seed stay as they were):
 * mostly just after a leader's clone took effect — the worker dies between its placeholder and its config,
 * leaving `lock: clone` and partial disks for good — else at any moment, killing whatever runs there.
 */
const rebootFaults = (w: ChaosWorld): Array<PlannedFault> => {
  const r = makePrng(w.shape.seed * 131 + 29)
  if (r.int(1, 4) !== 1) return []
  const at = r.int(5, w.shape.chaosMs / 1000) * 1000
  const downMs = r.int(20, 90) * 1000
  if (r.next() < 0.6) {
    const delayMs = r.int(200, 3000)
    return [{
      at,
      fault: {
        name: `the node running the next clone reboots ${delayMs} ms after it took effect (down ${downMs / 1000}s)`,
        run: Effect.sync(() => { w.rebootAtClone = { delayMs, downMs } })
      }
    }]
  }
  const node = `pve${r.int(1, w.model.nodes.size)}`
  return [{ at, fault: { name: `node ${node} reboots (down ${downMs / 1000}s)`, run: Effect.sync(() => w.model.rebootNode(node, downMs)) } }]
}

/**
 * One world in five has destroys that end `WARNINGS: 1` with a disk left behind (a stream of its own): the
 * end check counts such a disk as leaked unless the delete removed it.
 */
const partialTaskFaults = (w: ChaosWorld): Array<PlannedFault> => {
  const r = makePrng(w.shape.seed * 137 + 41)
  if (r.int(1, 5) !== 1) return []
  const at = r.int(5, w.shape.chaosMs / 1000) * 1000
  const times = r.int(1, 3)
  return [{ at, fault: { name: `the next ${times} VM destroy(s) end with warnings, a disk left behind`, run: Effect.sync(() => void w.faults.partialTasks({ type: "qmdestroy", times })) } }]
}

const MUTATION_OPS = ["clone", "updateConfig", "resize", "start", "stop", "shutdown", "deleteVm", "upload", "deleteVolume"]

/** The sizes every shard is left at once the faults stop (drawn right after the plan). */
export const drawFinalSizes = (w: ChaosWorld): void => {
  const [first, ...others] = w.shards
  first!.finalSizes = drawSizes(w.prng, w.shape.storm)
  for (const shard of others) shard.finalSizes = drawSizes(w.shardPrng, w.shape.storm)
}

/** Each fault at its time, on a fiber of `faultScope`. */
export const scheduleFaults = (w: ChaosWorld, plan: ReadonlyArray<PlannedFault>, faultScope: Scope.Scope) =>
  Effect.forEach(plan, ({ at, fault }) =>
    Effect.sleep(Duration.millis(at)).pipe(
      Effect.zipRight(Effect.suspend(() => {
        w.say(`fault: ${fault.name}`)
        return fault.run
      })),
      Effect.forkIn(faultScope)
    ), { discard: true })

/** Every rule removed, nodes back, the store healthy, lasting faults cut short, no crash pending. */
export const stopFaults = (w: ChaosWorld, faultScope: Scope.CloseableScope) =>
  Effect.gen(function* () {
    w.chaosOn = false
    yield* Scope.close(faultScope, Exit.void)
    w.faults.reset()
    w.storeFaults.errorRate = 0
    w.storeFaults.ambiguousRate = 0
    w.storeFaults.latencyMs = 0
    w.storeFaults.partitioned.clear()
    w.storeFaults.lateLanding.clear()
    w.crashTrigger = undefined
    w.pauseTrigger = undefined
    w.scaleDownAtClone = false
    w.rebootAtClone = undefined
    w.crashAfterClone = undefined
    yield* w.pauses.resumeAll(w.worldScope)
  })
