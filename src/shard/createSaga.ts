/**
 * The create saga: one step at a time from `requested` to `running`, each step chosen by the instance's
 * phase in the folded log (`CREATE_STEPS`) and given the record of that phase (`InstanceIn`). Every side
 * effect is preceded by an intent event and followed by a result event, and every step first looks at PVE
 * to see whether it already happened — so a leader that crashed anywhere resumes from the log without
 * cloning twice, and a deposed leader (whose next append is `Fenced`) makes at most the one call it was in.
 *
 * PVE calls on the happy path: the upload, the clone, one configure call, the resize when `DiskSize` grows
 * the disk, and the start (plus task polls, and a share of the cached reads: one `/cluster/resources` for
 * placement, templates and storages, and each template's config, which gives the clone's starting tags,
 * notes and disk size without a read of the clone).
 */
import { Clock, Effect, Either, Option, Redacted, SubscriptionRef } from "effect"
import { type ParsedShardConfig, type VmSpec, vmSpecFor } from "../domain/config/index.js"
import { formatDiskSize, parseDiskSize } from "../domain/config/proxmox.js"
import { cloudInitSeed, InvalidCloudInitInput, normaliseUserData } from "../domain/cloudInit.js"
import { upsertManagedNotes } from "../domain/managedNotes.js"
import { associationTags, mergePveTags, parsePveTags } from "../domain/pveTags.js"
import {
  Cloned,
  CloneRequested,
  Configured,
  IsoUploaded,
  IsoUploadRequested,
  NodeChosen,
  NonceIssued,
  Resized,
  Started,
  StartRequested,
  TemplateResolved,
  VmidsSeen
} from "../domain/shard/events.js"
import { type CreateStep, inPhase, type InstanceIn, SAGA_OF_PHASE } from "../domain/shard/sagaView.js"
import { getInstance, type Instance, type Phase } from "../domain/shard/state.js"
import { renderUserDataText, withRenderedArgs } from "../domain/shard/templateData.js"
import { userDataSource, withAgentRegistration } from "../domain/shard/userData.js"
import { nonceLifetime } from "../domain/agent/nonce.js"
import { cdromDrive, isoFileName, isoVolid } from "../domain/pveNames.js"
import { EventLog, type Fenced, type LogUnavailable } from "../services/EventLog.js"
import { IsoBuilder } from "../services/IsoBuilder.js"
import type { UserDataSource } from "../services/UserDataSource.js"
import type { VmConfig } from "../domain/pve/schemas.js"
import { type PveApiError, ProxmoxApi } from "../services/ProxmoxApi.js"
import { ClusterView } from "./ClusterView.js"
import { abandonDeadClone, anothersDeadClone, placeholderAt } from "./deadClone.js"
import { instanceTemplateData, userDataTemplateText } from "./instanceTemplates.js"
import { Preflight } from "./Preflight.js"
import { SagaLimits } from "./SagaLimits.js"
import { registrationUrl, ShardContext } from "./ShardContext.js"
import { permanentStepError, StepError, stepErrorFrom, type StepName, waitingStepError } from "./stepError.js"
import { type VmMismatch, vmOfInstance } from "./vmCheck.js"

const MIB = 1024 * 1024
/**
 * How often in a row a clone may be refused with "already exists" for a VMID that no VM is seen to hold
 * before the create gives up. A VMID another VM holds is never counted: the allocator moves on, bounded by
 * the range (`vmid_range`).
 */
const MAX_UNEXPLAINED_COLLISIONS = 8
/** The disk the template boots from; `DiskSize` applies to it. */
export const BOOT_DISK = "scsi0"


export const net0Of = (spec: VmSpec) => `virtio,bridge=${spec.bridge}${spec.vlanTag === undefined ? "" : `,tag=${spec.vlanTag}`}`

const now = Clock.currentTimeMillis

const isNotFound = (error: PveApiError) => error.classification === "notFound"

/** The config and resolved VM spec of an instance's group; a permanent step error when the group is gone. */
const groupSpec = (config: ParsedShardConfig, instance: Instance, step: CreateStep) =>
  Effect.gen(function* () {
    const group = instance.tenant === undefined || instance.group === undefined ? undefined : config.config.groups[instance.tenant]?.[instance.group]
    if (group === undefined) {
      return yield* permanentStepError(instance.id, step, `group ${instance.tenant ?? "?"}/${instance.group ?? "?"} is no longer in the shard config`)
    }
    // Every string of the args is a template, rendered for this VM — without the nonce: args end up in PVE's VM config.
    const data = instanceTemplateData(yield* ShardContext, config.config, group, instance.id, "")
    const rendered = withRenderedArgs(config.config, group, data)
    if (Either.isLeft(rendered)) return yield* permanentStepError(instance.id, step, rendered.left)
    const spec = vmSpecFor(rendered.right, group.tenant, group.name)
    if (Either.isLeft(spec)) return yield* permanentStepError(instance.id, step, spec.left.message)
    return { group, spec: spec.right }
  })

/**
 * Who holds VMID `vmid` right now, looked up on the nodes where our clone could have put it. A clone in
 * progress holds its VMID with a placeholder config that carries only `lock: clone` — no name yet — so
 * whose it is cannot be told until the clone ends: `Busy`.
 */
const vmidHolder = (instanceId: string, vmid: number, nodes: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const pve = yield* ProxmoxApi
    for (const node of [...new Set(nodes)]) {
      const found = yield* pve.vmConfig(node, vmid).pipe(
        Effect.map((config) =>
          Option.some(
            config.name === instanceId
              ? ({ _tag: "Ours", node, locked: config.lock !== undefined } as const)
              : config.name === undefined && config.lock !== undefined
              ? ({ _tag: "Busy", node, lock: config.lock } as const)
              : ({ _tag: "Theirs", node } as const)
          )
        ),
        Effect.catchTag("PveApiError", (error) => (isNotFound(error) ? Effect.succeed(Option.none()) : Effect.fail(error)))
      )
      if (Option.isSome(found)) return found
    }
    return Option.none()
  })

/** A VMID of the shard's `vmid_range` for the next clone; a range with none free fails the create, naming it. */
const allocateVmid = (instanceId: string, step: StepName, config: ParsedShardConfig) =>
  Effect.flatMap(SagaLimits, (limits) => limits.nextVmid(config.config.shard.infra.options.vmidRange)).pipe(
    Effect.catchTag("VmidRangeExhausted", (error) => Effect.fail(permanentStepError(instanceId, step, error.message)))
  )

/**
 * After a clone found its VMID taken: a fresh `/cluster/resources` read, so the allocator skips every VMID
 * others use and the log's high-water mark rises above them (as at the term's start). Whether `vmid` is listed.
 */
const refreshClusterVmids = (instanceId: string, step: StepName, vmid: number) =>
  Effect.gen(function* () {
    const log = yield* EventLog
    const limits = yield* SagaLimits
    const vms = yield* (yield* ProxmoxApi).vmResources().pipe(Effect.mapError(stepErrorFrom(instanceId, step)))
    yield* limits.noteClusterVmids(vms.map((vm) => vm.vmid))
    const highest = vms.reduce((max, vm) => Math.max(max, vm.vmid), 0)
    if (highest > (yield* log.state).vmidHighWater) yield* log.append([VmidsSeen.make({ highest })])
    return vms.some((vm) => vm.vmid === vmid)
  })

/** The template to clone for a VM on `node`: by VMID anywhere in the cluster, or by name on that node. */
const resolveTemplate = (instanceId: string, spec: VmSpec, node: string) =>
  Effect.gen(function* () {
    const view = yield* ClusterView
    const template = "vmid" in spec.template
      ? yield* view.templateByVmid(spec.template.vmid).pipe(Effect.mapError(stepErrorFrom(instanceId, "template")))
      : yield* view.templateByName(node, spec.template.name).pipe(Effect.mapError(stepErrorFrom(instanceId, "template")))
    if (typeof template === "string") return yield* permanentStepError(instanceId, "template", template)
    return template
  })

/**
 * The size of the template's boot disk in bytes, from its cached config (a clone starts with the template's
 * disks); none when the log records no template or its boot disk names no size.
 */
const templateDiskBytes = (instance: InstanceIn<"cloned" | "configured">, step: StepName) =>
  Effect.gen(function* () {
    const { templateNode, templateVmid } = instance
    if (templateNode === undefined || templateVmid === undefined) return Option.none<number>()
    const template = yield* (yield* ClusterView).templateConfig(templateNode, templateVmid).pipe(Effect.mapError(stepErrorFrom(instance.id, step)))
    const disk = template[BOOT_DISK]
    const size = typeof disk === "string" ? parseDiskSize(/(?:^|,)size=([^,]+)/.exec(disk)?.[1] ?? "") : undefined
    return size === undefined || size.relative ? Option.none<number>() : Option.some(size.bytes)
  })

/**
 * Sets the boot disk to `DiskSize` unless the log says it already is; the `Resized` event to record, if any.
 * A `+` size grows the template's boot disk: the absolute result (the template's size plus the amount) is
 * sent, so a resize redone after a crash that came before `Resized` was recorded does not grow the disk a
 * second time. PVE never shrinks a disk: an absolute size the template's disk already has (or exceeds) needs
 * no call — PVE would do nothing, or refuse ("shrinking disks is not supported") — and a smaller one keeps
 * the template's size, with a warning naming both; neither is a reason to fail the VM.
 */
const resizeIfNeeded = (instance: InstanceIn<"cloned" | "configured">, spec: VmSpec) =>
  Effect.gen(function* () {
    const pve = yield* ProxmoxApi
    const view = yield* ClusterView
    const limits = yield* SagaLimits
    const { id, node, vmid } = instance
    const diskSize = spec.diskSize
    if (diskSize === undefined || instance.diskSize === diskSize) return Option.none()
    const size = parseDiskSize(diskSize)
    if (size === undefined) return yield* permanentStepError(id, "resize", `DiskSize ${JSON.stringify(diskSize)} is not a PVE size`)
    const templateBytes = yield* templateDiskBytes(instance, "resize")
    const resized = Option.some(Resized.make({ instanceId: id, at: yield* now, size: diskSize }))
    let target = diskSize
    if (size.relative) {
      if (Option.isNone(templateBytes)) {
        return yield* permanentStepError(id, "resize", instance.templateVmid === undefined
          ? `DiskSize ${diskSize} grows the template's disk, but the log records no template`
          : `DiskSize ${diskSize}: ${BOOT_DISK} of template ${instance.templateVmid} on ${instance.templateNode ?? "?"} has no size to grow from`)
      }
      target = formatDiskSize(templateBytes.value + size.bytes)
    } else if (Option.isSome(templateBytes) && templateBytes.value >= size.bytes) {
      if (templateBytes.value > size.bytes) {
        yield* Effect.logWarning(`${id}: ${BOOT_DISK} of VM ${vmid} is already larger than DiskSize ${diskSize}; PVE does not shrink disks, kept as is`)
      }
      return resized
    }
    const shared = yield* view.isShared(node, spec.storagePool).pipe(Effect.mapError(stepErrorFrom(id, "resize")))
    const grown = yield* limits.resizeSlot(node, spec.storagePool, shared)(
      limits.onNode(node)(pve.resize(node, vmid, BOOT_DISK, target)).pipe(
        Effect.flatMap(Option.match({ onNone: () => Effect.void, onSome: (upid) => Effect.asVoid(pve.waitTask(node, upid)) }))
      )
    ).pipe(Effect.either)
    if (Either.isLeft(grown)) {
      if (!/shrinking disks is not supported/.test(grown.left.message)) return yield* stepErrorFrom(id, "resize")(grown.left)
      yield* Effect.logWarning(`${id}: ${BOOT_DISK} of VM ${vmid} is already larger than DiskSize ${diskSize}; PVE does not shrink disks, kept as is`)
    } else if (target !== diskSize) {
      yield* Effect.logInfo(`${id}: ${BOOT_DISK} of VM ${vmid} grown by ${diskSize.slice(1)} to ${target}`)
    }
    return resized
  })

/**
 * Before a resumed step acts on the VMID the log recorded: the VM there must be the instance's (`vmCheck.ts`).
 * A VMID this saga fiber cloned itself, or already looked at, needs no second look — within a term only this
 * leader writes the log — so the happy path makes no extra call; a VMID read back from a replayed log gets one.
 * Another VM there fails the step with `VmMismatch` (the runner records it and the instance is held); no VM
 * of ours anywhere means the VM is gone, which ends the create (compensated, then replaced).
 */
const checkRecordedVm = (instance: InstanceIn<"cloned" | "configured" | "starting">, step: CreateStep) =>
  Effect.gen(function* () {
    const at = yield* vmOfInstance(instance, step).pipe(Effect.mapError((error) => (error._tag === "VmMismatch" ? error : stepErrorFrom(instance.id, step)(error))))
    if (at._tag === "Busy") return yield* waitingStepError(instance.id, step, `VM ${instance.vmid} is locked (${at.lock}) and has no name yet`)
    if (at._tag === "Gone") return yield* permanentStepError(instance.id, step, `its VM is gone: ${at.reason}`)
    return at.config
  })

/** What every create step is given besides its instance: the config in force when the step began. */
interface StepInput {
  readonly config: ParsedShardConfig
  /** The first step a saga fiber runs: only then can PVE be ahead of the log, so only then does a step look. */
  readonly resumed: boolean
}

const span = (step: CreateStep | "none") => `createSaga.${step}`

const placeStep = Effect.fn(span("place"))(function* (instance: InstanceIn<"requested">, { config }: StepInput) {
  const log = yield* EventLog
  const view = yield* ClusterView
  const limits = yield* SagaLimits
  const id = instance.id
  const step = "place"
  const { group, spec } = yield* groupSpec(config, instance, step)
  yield* limits.creationTurn(config.config.shard.createRateLimit)
  // A template on local storage can only be cloned on its own node: placement is confined to it.
  let allowed: ReadonlyArray<string> | undefined
  if ("vmid" in spec.template) {
    const template = yield* view.templateByVmid(spec.template.vmid).pipe(Effect.mapError(stepErrorFrom(id, step)))
    if (typeof template === "string") return yield* permanentStepError(id, step, template)
    if (!template.clonesAnywhere) allowed = [template.node]
  }
  // Nodes the preflight found without the group's template, storage or bridge are never chosen.
  const unfit = yield* (yield* Preflight).unfitNodes(group.tenant, group.name)
  const placed = yield* view.place({ memoryBytes: spec.memoryMiB * MIB, cores: spec.cores }, allowed, unfit).pipe(
    Effect.catchTag("NoPlacement", (error) => Effect.fail(waitingStepError(id, step, error.message))),
    Effect.mapError((error) => (error instanceof StepError ? error : stepErrorFrom(id, step)(error)))
  )
  // Neither decision touches PVE, so both are recorded in one write (one PUT fewer per create).
  const template = yield* resolveTemplate(id, spec, placed.node)
  const at = yield* now
  yield* log.append([
    NodeChosen.make({ instanceId: id, at, node: placed.node }),
    TemplateResolved.make({ instanceId: id, at, templateVmid: template.vmid, templateNode: template.node, infraHash: group.infraHash })
  ])
  yield* Effect.logInfo(`${id}: placed on ${placed.node} (TOPSIS score ${placed.score.toFixed(3)})`)
})

/** A log written before placement and template were recorded together. */
const templateStep = Effect.fn(span("template"))(function* (instance: InstanceIn<"placed">, { config }: StepInput) {
  const log = yield* EventLog
  const id = instance.id
  const { group, spec } = yield* groupSpec(config, instance, "template")
  const template = yield* resolveTemplate(id, spec, instance.node)
  yield* log.append([TemplateResolved.make({ instanceId: id, at: yield* now, templateVmid: template.vmid, templateNode: template.node, infraHash: group.infraHash })])
})

const isoStep = Effect.fn(span("iso"))(function* (instance: InstanceIn<"templated" | "iso-uploading">, { config }: StepInput) {
  const log = yield* EventLog
  const pve = yield* ProxmoxApi
  const limits = yield* SagaLimits
  const shard = yield* ShardContext
  const id = instance.id
  const step = "iso"
  const { group } = yield* groupSpec(config, instance, step)
  const node = instance.node
  const storage = config.config.shard.infra.options.cloudInitIsoStorage
  const volid = isoVolid(storage, id)
  // Inline, or fetched from its URL now (before a nonce is minted: a URL that does not answer mints none).
  const userDataTemplate = yield* userDataTemplateText(id, step, userDataSource(config.config, group))
  // With registration on, every (re)built ISO carries a fresh nonce: the token lives only in the
  // ISO, its hash goes into the log before the upload, so only the newest upload's nonce registers.
  const registration = shard.registration
  const minted = registration === undefined ? undefined : yield* registration.pki.mintNonce({
    instanceId: id,
    cluster: shard.clusterId,
    shard: shard.shard,
    tenant: group.tenant,
    group: group.name,
    ttl: nonceLifetime(config.config.shard.garbageCollection.registrationTimeout)
  })
  const userData = renderUserDataText(
    userDataTemplate,
    instanceTemplateData(shard, config.config, group, id, minted === undefined ? "" : Redacted.value(minted.jwt))
  )
  if (Either.isLeft(userData)) return yield* permanentStepError(id, step, userData.left)
  const text = minted === undefined || registration === undefined
    ? userData.right
    : withAgentRegistration(userData.right.trim() === "" ? "" : normaliseUserData(userData.right), {
      registrationUrl: registrationUrl(config, registration.advertiseHost),
      nonce: Redacted.value(minted.jwt),
      caPem: registration.pki.caPem
    })
  const seed = cloudInitSeed({ instanceId: id, userData: text })
  if (seed instanceof InvalidCloudInitInput) return yield* permanentStepError(id, step, seed.message)
  const image = yield* (yield* IsoBuilder).build(seed).pipe(Effect.mapError((error) => permanentStepError(id, step, error.message)))
  const nonceIssued = minted === undefined ? [] : [NonceIssued.make({ instanceId: id, at: yield* now, nonceHash: minted.hash })]
  if (instance.phase === "templated") {
    yield* log.append([IsoUploadRequested.make({ instanceId: id, at: yield* now, node, storage, volid }), ...nonceIssued])
  } else if (nonceIssued.length > 0) {
    yield* log.append(nonceIssued)
  }
  // Uploading the same name again overwrites it, so a resumed upload simply repeats.
  yield* limits.onNode(node)(pve.upload(node, storage, { filename: isoFileName(id), content: "iso", data: image })).pipe(
    Effect.flatMap((upid) => pve.waitTask(node, upid)),
    Effect.mapError(stepErrorFrom(id, step))
  )
  // The upload's result and the clone's intent (the VMID reservation) in one write.
  const vmid = yield* allocateVmid(id, step, config)
  const at = yield* now
  yield* log.append([
    IsoUploaded.make({ instanceId: id, at, volid }),
    CloneRequested.make({ instanceId: id, at, vmid, node, templateVmid: instance.templateVmid, templateNode: instance.templateNode })
  ])
})

const cloneStep = Effect.fn(span("clone"))(function* (instance: InstanceIn<"iso-ready" | "cloning">, { config, resumed }: StepInput) {
  const log = yield* EventLog
  const pve = yield* ProxmoxApi
  const view = yield* ClusterView
  const limits = yield* SagaLimits
  const id = instance.id
  const step = "clone"
  const { spec } = yield* groupSpec(config, instance, step)
  const { node, templateNode, templateVmid } = instance
  let vmid = instance.vmid
  /** When the clone onto `vmid` was requested: a node that booted since killed it, if it ran there. */
  let requestedAt = instance.cloneRequestedAt
  /**
   * A placeholder at `at` that stays `Busy` (deadClone.ts): the instance's dead clone is let go of (recorded),
   * another's dead one is left like any VM not ours; either way a new VMID is taken. False: wait for it.
   */
  const movedOn = (at: number, node: string) =>
    Effect.gen(function* () {
      const placeholder = yield* placeholderAt(instance, at, node, requestedAt)
      switch (placeholder._tag) {
        case "Running":
          return false
        case "Dead":
          yield* abandonDeadClone(instance, placeholder.dead)
          return true
        case "Another":
          yield* Effect.logWarning(`${id}: ${anothersDeadClone(at, node)}; taking another VMID`)
          return true
      }
    })
  if (instance.phase === "cloning" && vmid !== undefined && resumed) {
    // Resumed after the intent: did the clone happen?
    const holder = yield* vmidHolder(id, vmid, [node, templateNode]).pipe(Effect.mapError(stepErrorFrom(id, step)))
    if (Option.isSome(holder) && holder.value._tag === "Ours") {
      if (holder.value.locked) return yield* waitingStepError(id, step, `VM ${vmid} is still locked by its clone`)
      yield* log.append([Cloned.make({ instanceId: id, at: yield* now, vmid, node: holder.value.node })])
      return
    }
    // Our own clone may still be running (a crash left it behind): cloning again would make a second VM.
    if (Option.isSome(holder) && holder.value._tag === "Busy" && !(yield* movedOn(vmid, holder.value.node))) {
      return yield* waitingStepError(id, step, `VM ${vmid} is being created (lock: ${holder.value.lock}); waiting to see whose it is`)
    }
    if (Option.isSome(holder)) vmid = undefined
  }
  for (let unexplained = 0; ;) {
    if (vmid === undefined) {
      if (unexplained >= MAX_UNEXPLAINED_COLLISIONS) {
        return yield* permanentStepError(id, step, `${unexplained} clones in a row were refused as "already exists" for VMIDs no VM is seen to hold`)
      }
      vmid = yield* allocateVmid(id, step, config)
      requestedAt = yield* now
      yield* log.append([CloneRequested.make({ instanceId: id, at: requestedAt, vmid, node, templateVmid, templateNode })])
    }
    const newid = vmid
    const shared = yield* view.isShared(node, spec.storagePool).pipe(Effect.mapError(stepErrorFrom(id, step)))
    // A delete recorded while this clone waited for its slot wins: no VM is cloned for a deleting instance (chaos seed 16).
    // Read once the instance's DeleteRequested in flight (or in doubt) is settled: a clone must never
    // race the delete decision being written (chaos seed 70127: an ambiguous write, then the clone).
    const settled = log.settledState?.((event) => event._tag === "DeleteRequested" && event.instanceId === id) ?? log.state
    const deleting = Effect.map(settled, (s) => Option.exists(getInstance(s, id), (i) => i.phase === "deleting"))
    const cloned = yield* limits.cloneSlot(node, spec.storagePool, shared)(Effect.flatMap(deleting, (gone) => gone ? Effect.succeed(false) : limits.onNode(templateNode)(
      pve.clone(templateNode, templateVmid, {
        newid,
        name: id,
        ...(node === templateNode ? {} : { target: node }),
        storage: spec.storagePool,
        full: true,
        ...(spec.pool === undefined ? {} : { pool: spec.pool })
      })
    ).pipe(Effect.flatMap((upid) => pve.waitTask(templateNode, upid, { timeout: "30 minutes" })), Effect.as(true)))).pipe(Effect.either)
    if (Either.isRight(cloned) && !cloned.right) return
    if (Either.isRight(cloned)) {
      yield* log.append([Cloned.make({ instanceId: id, at: yield* now, vmid: newid, node })])
      yield* Effect.logInfo(`${id}: cloned template ${templateVmid} (${templateNode}) to VM ${newid} on ${node}`)
      return
    }
    const failure = cloned.left
    const collided = (failure._tag === "PveApiError" || failure._tag === "TaskFailed") && failure.classification === "conflict"
    // The cached view may be why (a template deleted or moved since it was read): the next attempt reads afresh.
    if (!collided) return yield* view.invalidate.pipe(Effect.zipRight(stepErrorFrom(id, step)(failure)))
    // "already exists": ours (a retried clone whose first answer was lost) or another VM's?
    const holder = yield* vmidHolder(id, newid, [node, templateNode]).pipe(Effect.mapError(stepErrorFrom(id, step)))
    if (Option.isSome(holder) && holder.value._tag === "Ours") {
      yield* log.append([Cloned.make({ instanceId: id, at: yield* now, vmid: newid, node: holder.value.node })])
      return
    }
    if (Option.isSome(holder) && holder.value._tag === "Busy" && !(yield* movedOn(newid, holder.value.node))) {
      return yield* waitingStepError(id, step, `VMID ${newid} is taken by a clone in progress (perhaps ours); waiting to see whose it is`)
    }
    // Someone else's VM (or one not seen yet): learn the cluster's VMIDs afresh and pick again.
    const listed = yield* refreshClusterVmids(id, step, newid)
    unexplained = Option.isSome(holder) || listed ? 0 : unexplained + 1
    yield* Effect.logWarning(`${id}: VMID ${newid} is taken by another VM; trying another one`)
    vmid = undefined
  }
})

const configureStep = Effect.fn(span("configure"))(function* (instance: InstanceIn<"cloned">, { config, resumed }: StepInput) {
  const log = yield* EventLog
  const pve = yield* ProxmoxApi
  const limits = yield* SagaLimits
  const shard = yield* ShardContext
  const id = instance.id
  const step = "configure"
  const { group, spec } = yield* groupSpec(config, instance, step)
  const { node, vmid } = instance
  const checked = resumed ? Option.some(yield* checkRecordedVm(instance, step)) : Option.none<VmConfig>()
  const logId = (yield* log.state).logId
  // The clone carries the template's tags and description: ours go beside them, nothing of the template's is lost.
  // Right after this fiber's own clone, the template's (cached) config says what they are, so the clone is not
  // read; a resumed step has just read the VM itself (ours may already be there: the merge then changes nothing).
  const { templateNode, templateVmid } = instance
  const cloned = Option.isSome(checked)
    ? checked.value
    : templateNode !== undefined && templateVmid !== undefined
    ? yield* (yield* ClusterView).templateConfig(templateNode, templateVmid).pipe(Effect.mapError(stepErrorFrom(id, step)))
    : yield* pve.vmConfig(node, vmid).pipe(Effect.mapError(stepErrorFrom(id, step)))
  // The notes name this log: what ties the VM to it (no other log adopts or deletes it).
  const description = upsertManagedNotes(cloned.description ?? "", {
    tenant: group.tenant,
    group: group.name,
    kind: instance.kind,
    template: group.template,
    created: new Date(instance.requestedAt),
    ...(logId === undefined ? {} : { log: logId })
  })
  // Ours first (a reader that looks only at the first tag still finds `nstance`), then the template's.
  const tags = mergePveTags(associationTags(shard.clusterId, shard.shard).join(";"), parsePveTags(cloned.tags))
  yield* limits.onNode(node)(
    pve.updateConfig(node, vmid, {
      cores: spec.cores,
      memory: spec.memoryMiB,
      net0: net0Of(spec),
      onboot: spec.startOnBoot,
      description,
      tags,
      ...(instance.isoVolid === undefined ? {} : { ide2: cdromDrive(instance.isoVolid) })
    })
  ).pipe(
    Effect.flatMap(Option.match({ onNone: () => Effect.void, onSome: (upid) => Effect.asVoid(pve.waitTask(node, upid)) })),
    Effect.mapError(stepErrorFrom(id, step))
  )
  const resized = yield* resizeIfNeeded(instance, spec)
  // Configured, Resized and the start's intent in one write: redoing the configure call and the
  // (absolute) resize after a crash changes nothing.
  const at = yield* now
  yield* log.append([
    Configured.make({ instanceId: id, at }),
    ...Option.toArray(resized),
    StartRequested.make({ instanceId: id, at })
  ])
})

/**
 * An adopted VM that was not running, or a log written before configure and start were recorded together.
 * An adopted VM is started as it is: its size was decided by whoever created it.
 */
const resizeStep = Effect.fn(span("resize"))(function* (instance: InstanceIn<"configured">, { config, resumed }: StepInput) {
  const log = yield* EventLog
  if (resumed) yield* checkRecordedVm(instance, instance.adopted ? "start" : "resize")
  const resized = instance.adopted ? Option.none() : yield* resizeIfNeeded(instance, (yield* groupSpec(config, instance, "resize")).spec)
  const at = yield* now
  yield* log.append([...Option.toArray(resized), StartRequested.make({ instanceId: instance.id, at })])
})

const startStep = Effect.fn(span("start"))(function* (instance: InstanceIn<"starting">, { resumed }: StepInput) {
  const log = yield* EventLog
  const pve = yield* ProxmoxApi
  const limits = yield* SagaLimits
  const { id, node, vmid } = instance
  const step = "start"
  if (resumed) yield* checkRecordedVm(instance, step)
  const running = resumed && (yield* pve.vmStatus(node, vmid).pipe(Effect.mapError(stepErrorFrom(id, step)))).status === "running"
  if (!running) {
    yield* limits.onNode(node)(pve.start(node, vmid)).pipe(
      Effect.flatMap((upid) => pve.waitTask(node, upid)),
      // A start that fails because the VM already runs (an earlier start, still in flight when a
      // leader crashed, got there first) is a success: the status decides, not the message.
      Effect.catchAll((error) =>
        pve.vmStatus(node, vmid).pipe(
          Effect.orElseFail(() => error),
          Effect.flatMap((status) => (status.status === "running" ? Effect.void : Effect.fail(error)))
        )
      ),
      Effect.mapError(stepErrorFrom(id, step))
    )
  }
  yield* log.append([Started.make({ instanceId: id, at: yield* now })])
  yield* Effect.logInfo(`${id}: running as VM ${vmid} on ${node}`)
})

/**
 * A running or registered instance waits for its agent or a delete request; a deleting one is the delete
 * saga's (`deleteSaga.ts`, which the runner runs instead).
 */
const nothingToDo = Effect.fn(span("none"))(() => Effect.void)

type CreateStepFailure = StepError | VmMismatch | Fenced | LogUnavailable

type CreateStepServices = EventLog | ProxmoxApi | ClusterView | SagaLimits | ShardContext | IsoBuilder | UserDataSource | Preflight

type CreateStepFrom<P extends Phase> = (instance: InstanceIn<P>, input: StepInput) => Effect.Effect<void, CreateStepFailure, CreateStepServices>

/** The step the create saga runs from each phase; a phase added to `Phase` does not compile until it has one. */
export const CREATE_STEPS: { readonly [P in Phase]: CreateStepFrom<P> } = {
  requested: placeStep,
  placed: templateStep,
  templated: isoStep,
  "iso-uploading": isoStep,
  "iso-ready": cloneStep,
  cloning: cloneStep,
  cloned: configureStep,
  configured: resizeStep,
  starting: startStep,
  running: nothingToDo,
  registered: nothingToDo,
  deleting: nothingToDo
}

const stepFrom = <P extends Phase>(instance: InstanceIn<P>, input: StepInput) => CREATE_STEPS[instance.phase](instance, input)

/**
 * Runs the next step of a create whose instance is in a create phase; returns when the step's result is
 * in the log. The caller loops until the instance runs, is deleted, or a step fails. `resumed` is true for
 * the first step a saga fiber runs. A record that lacks what its phase has (a fold bug) fails the create
 * for good, naming what is missing, rather than calling PVE with an undefined node or VMID.
 */
export const createStep = Effect.fn("createSaga")(function* (instance: Instance, resumed: boolean) {
  const shard = yield* ShardContext
  const config = yield* SubscriptionRef.get(shard.config)
  const record = inPhase(instance)
  if (Either.isLeft(record)) return yield* permanentStepError(instance.id, SAGA_OF_PHASE[instance.phase], record.left.message)
  return yield* stepFrom(record.right, { config, resumed })
})
