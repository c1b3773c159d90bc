/**
 * The file stream of the agent channel: for each connected agent, its VM's files (`templates.*.files` of its
 * group's template) made for that VM alone — the instance comes from the connection's certificate, never from
 * the request — sent whole when the stream opens and again whenever one changes: a config push (the config
 * reference changes and wakes every stream), a secret rotated or a storage object rewritten (their versions
 * are looked at every `pollEvery`, one bucket request per secret or object per period however many VMs use
 * it), a certificate at two thirds of its lifetime, a key the agent just proved. Each round ends with a commit
 * naming every file the VM should hold, after which the agent removes what it wrote earlier and is no longer
 * named. Keys the agent proved are kept in memory for the instance (as the original keeps them out of the
 * bucket): a new leader asks for them again, and the agent, which keeps its private keys, submits the same.
 */
import { Clock, Duration, Effect, type Exit, Queue, Stream, type SubscriptionRef } from "effect"
import type { FileMessage } from "../domain/agent/fileMessages.js"
import type { InvalidCertificate, NotLeader, UnknownInstance } from "../domain/agent/errors.js"
import { MAX_FILES_PER_TEMPLATE } from "../domain/config/files.js"
import type { ParsedShardConfig } from "../domain/config/index.js"
import { own } from "../domain/config/records.js"
import { templateData } from "../domain/shard/templateData.js"
import { recordFileDelivered, recordFileDeliveryFailure } from "../metrics/metrics.js"
import type { AgentBackendShape, AgentCaller } from "../services/AgentBackend.js"
import type { ClusterPkiShape } from "../services/ClusterPki.js"
import type { ObjectStoreShape } from "../services/ObjectStore.js"
import type { SecretStoreShape } from "../services/SecretStore.js"
import { agentKeysNeeded, type FileSources, type GeneratedFile, generateFile } from "./fileGeneration.js"

export interface FileDeliveryOptions {
  readonly backend: AgentBackendShape
  readonly config: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  readonly pki: ClusterPkiShape
  readonly secrets: SecretStoreShape | undefined
  /** The shard's storage (keys relative to its prefix), where `storage` files are read. */
  readonly storage: ObjectStoreShape
  /** `host:port` agents, registrations and operators reach the shard at, for `.Server.*Addr`. */
  readonly serverAddresses: (config: ParsedShardConfig) => { readonly registrationAddr: string; readonly agentAddr: string; readonly operatorAddr: string }
  /** How often secrets' and storage objects' versions are looked at (default 5 seconds). */
  readonly pollEvery?: Duration.DurationInput
}

export interface FileDeliveryShape {
  /** Holds a key the caller proved (the handler checked the proof) and wakes its stream. */
  readonly keySubmitted: (instanceId: string, name: string, publicKeyPem: string) => Effect.Effect<void>
  /** The caller's file stream; ends with the caller's refusal when its instance is gone or its certificate superseded. */
  readonly stream: (caller: AgentCaller) => Stream.Stream<FileMessage, UnknownInstance | InvalidCertificate | NotLeader>
}

/** A look-up shared by every stream for `ttl`: N VMs with one secret cost one HEAD per period, not N. */
const sharedFor = <A, E>(ttl: number, look: (key: string) => Effect.Effect<A, E>) => {
  const seen = new Map<string, { readonly at: number; readonly exit: Exit.Exit<A, E> }>()
  return (key: string): Effect.Effect<A, E> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const known = seen.get(key)
      if (known !== undefined && now - known.at < ttl) return known.exit
      return Effect.tap(Effect.exit(look(key)), (exit) => Effect.sync(() => {
        if (seen.size > 10_000) seen.clear()
        seen.set(key, { at: now, exit })
      })).pipe(Effect.flatten)
    })
}

export const makeFileDelivery = (options: FileDeliveryOptions): Effect.Effect<FileDeliveryShape> =>
  Effect.sync(() => {
    const pollMillis = Duration.toMillis(Duration.decode(options.pollEvery ?? "5 seconds"))
    // Versions are looked at once per half period: a change is seen within `pollEvery` by every stream.
    const secrets = options.secrets
    const sharedSecrets: SecretStoreShape | undefined = secrets === undefined ? undefined : (() => {
      const version = sharedFor(pollMillis / 2, (key: string) => {
        const slash = key.indexOf("/")
        return secrets.version(key.slice(0, slash), key.slice(slash + 1))
      })
      return { ...secrets, version: (tenant, name) => version(`${tenant}/${name}`) }
    })()
    const head = sharedFor(pollMillis / 2, options.storage.head)
    const sources: FileSources = { pki: options.pki, secrets: sharedSecrets, storage: { ...options.storage, head } }

    /** Keys each instance's agent proved, by name. */
    const keys = new Map<string, Map<string, string>>()
    /** The files made for each instance, so a certificate is reused until due (also across reconnects). */
    const made = new Map<string, Map<string, GeneratedFile>>()
    /** Each open stream's wake-up; a newer stream of an instance replaces the older one's. */
    const wakers = new Map<string, Queue.Queue<void>>()
    const wake = (instanceId: string) => {
      const queue = wakers.get(instanceId)
      if (queue !== undefined) Queue.unsafeOffer(queue, undefined)
    }

    const stream = (caller: AgentCaller): Stream.Stream<FileMessage, UnknownInstance | InvalidCertificate | NotLeader> =>
      Stream.asyncScoped<FileMessage, UnknownInstance | InvalidCertificate | NotLeader>((emit) =>
        Effect.gen(function* () {
          const instanceId = caller.instanceId
          const woken = yield* Queue.sliding<void>(1)
          wakers.set(instanceId, woken)
          yield* Effect.addFinalizer(() =>
            Effect.gen(function* () {
              if (wakers.get(instanceId) !== woken) return
              wakers.delete(instanceId)
              // A VM that went away with its instance (deleted, or being deleted) leaves nothing kept behind; a
              // registered one that reconnects finds its certificates and keys.
              const still = yield* Effect.either(options.backend.registeredInstance(caller))
              if (still._tag === "Left" && still.left._tag === "UnknownInstance") {
                keys.delete(instanceId)
                made.delete(instanceId)
              }
            }))
          // A config push wakes the stream: its reference changes.
          let seenConfig: ParsedShardConfig | undefined
          const sent = new Map<string, { readonly digest: string; readonly mode: number }>()
          const failing = new Map<string, string>()
          let keysWanted = ""
          let committed: string | undefined
          const send = (message: FileMessage) => Effect.promise(() => emit.single(message))

          const round = Effect.gen(function* () {
            const instance = yield* options.backend.registeredInstance(caller)
            const parsed = yield* options.config.get
            seenConfig = parsed
            const config = parsed.config
            const group = own(own(config.groups, instance.tenant), instance.group)
            const template = group === undefined ? undefined : own(config.templates, group.template)
            const files = template?.files ?? {}
            const held = keys.get(instanceId) ?? new Map<string, string>()
            const missing = agentKeysNeeded(files).filter((name) => !held.has(name))
            if (missing.join("\n") !== keysWanted) {
              keysWanted = missing.join("\n")
              yield* send({ _tag: "KeysWanted", names: missing })
            }
            if (group === undefined) return
            const data = templateData({
              config,
              group,
              instanceId,
              nonce: "",
              caPem: options.pki.caPem,
              server: options.serverAddresses(parsed),
              registered: { hostname: instance.hostname, ipv4: instance.ipv4, ipv6: instance.ipv6 }
            })
            const target = { instanceId, tenant: instance.tenant, data, certificates: config.certificates.templates, agentKeys: held }
            const mine = made.get(instanceId) ?? new Map<string, GeneratedFile>()
            made.set(instanceId, mine)
            // Made first, sent after: every certificate a VM receives is in the event log before it leaves.
            const ready: Array<GeneratedFile> = []
            const issued: Array<{ readonly file: string; readonly serial: string; readonly notAfter: Date }> = []
            for (const name of Object.keys(files).sort()) {
              const prior = mine.get(name)
              const result = yield* Effect.either(generateFile(sources, target, name, files[name]!, prior))
              if (result._tag === "Left") {
                const error = result.left
                // Counted and logged when a file starts failing or fails otherwise, not at every look.
                if (failing.get(name) !== error.message) {
                  failing.set(name, error.message)
                  yield* recordFileDeliveryFailure(error.reason)
                  yield* Effect.logWarning(`${instanceId}: ${error.message}; the VM keeps the version it has`)
                }
                continue
              }
              failing.delete(name)
              const file = result.right
              mine.set(name, file)
              ready.push(file)
              if (file.certificate !== undefined && prior?.version !== file.version) {
                issued.push({ file: name, serial: file.certificate.serial, notAfter: file.certificate.notAfter })
              }
            }
            if (issued.length > 0) {
              const recorded = yield* Effect.either(options.backend.recordFileCertificates(instanceId, issued))
              if (recorded._tag === "Left") {
                // Not sent, and made again next round (then recorded), rather than a certificate the log never saw.
                for (const { file } of issued) mine.delete(file)
                yield* recordFileDeliveryFailure("certificate")
                yield* Effect.logWarning(`${instanceId}: certificates not recorded in the event log (${recorded.left._tag}); not sent yet`)
              } else {
                for (const { file, notAfter, serial } of issued) {
                  yield* Effect.logInfo(`${instanceId}: certificate ${file} issued (serial ${serial}, valid until ${notAfter.toISOString()})`)
                }
              }
            }
            let changed = false
            for (const file of ready) {
              const name = file.name
              if (file.certificate !== undefined && !mine.has(name)) continue
              const before = sent.get(name)
              if (before !== undefined && before.digest === file.digest && before.mode === file.mode) continue
              yield* send({ _tag: "File", name, mode: file.mode, contentBase64: Buffer.from(file.content).toString("base64"), digest: file.digest })
              sent.set(name, { digest: file.digest, mode: file.mode })
              yield* recordFileDelivered(file.kind)
              changed = true
            }
            for (const name of [...mine.keys()]) if (!Object.hasOwn(files, name)) mine.delete(name)
            const names = Object.keys(files).sort()
            if (changed || committed !== names.join("\n")) {
              committed = names.join("\n")
              for (const name of [...sent.keys()]) if (!names.includes(name)) sent.delete(name)
              yield* send({ _tag: "Commit", names })
            }
          })

          const wait = Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const renewals = [...(made.get(instanceId)?.values() ?? [])].flatMap((file) => (file.certificate === undefined ? [] : [file.certificate.renewAt - now]))
            const sleep = Math.max(10, Math.min(pollMillis, ...renewals))
            const configChanged = options.config.changes.pipe(
              Stream.filter((current) => current !== seenConfig),
              Stream.take(1),
              Stream.runDrain
            )
            yield* Effect.raceAll([Effect.sleep(Duration.millis(sleep)), Queue.take(woken), configChanged])
          })

          yield* round.pipe(
            Effect.zipRight(wait),
            Effect.forever,
            // A defect ends the stream (the agent reopens it) instead of leaving it silent.
            Effect.catchAllDefect((defect) => Effect.zipRight(Effect.logError(`${instanceId}: file stream failed`, defect), Effect.promise(() => emit.die(defect)))),
            Effect.catchAll((error) =>
              Effect.zipRight(
                // The instance is gone: what was kept for it goes too.
                Effect.sync(() => {
                  if (error._tag === "UnknownInstance") {
                    keys.delete(instanceId)
                    made.delete(instanceId)
                  }
                }),
                Effect.promise(() => emit.fail(error))
              )),
            Effect.forkScoped
          )
        }))

    return {
      keySubmitted: (instanceId, name, publicKeyPem) =>
        Effect.sync(() => {
          const held = keys.get(instanceId) ?? new Map<string, string>()
          // An agent has no use for more keys than a template has files: more is memory it must not cost.
          if (!held.has(name) && held.size >= MAX_FILES_PER_TEMPLATE) return
          held.set(name, publicKeyPem)
          keys.set(instanceId, held)
          wake(instanceId)
        }),
      stream
    }
  })
