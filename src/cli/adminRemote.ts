/**
 * `nstance-admin` commands that talk to a running shard over its admin endpoint: status, instances, groups,
 * dynamic group changes, operator creations and deletions, config refresh and validation, nonces and a
 * live watch. Each prints a human table by default and JSON with `--json`; a server that is down, a
 * standby (whose `NotLeader` is followed once) or refused credentials end in one line on stderr. The
 * credential is the admin token (the whole shard) or an operator certificate (its tenant only), never both.
 */
import { echoValue } from "../domain/errorText.js"
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import type { AdminRpcClient } from "../admin/AdminClient.js"
import { ADMIN_TOKEN_ENV, adminTokenFrom, CA_FILE_ENV, caFrom } from "../admin/token.js"
import { CERT_FILE_ENV, KEY_FILE_ENV, operatorCertificateFrom } from "../admin/operatorCertificate.js"
import type { GroupView, InstanceView, StatusView, WatchEvent } from "../rpc/AdminRpc.js"
import { UsageError } from "../inputFile.js"
import { formatFinding, summarizeFindings } from "../domain/pve/preflight.js"
import { escapeControl } from "./escape.js"

export const ADMIN_ADDR_ENV = "NSTANCE_ADMIN_ADDR"
/** The operator port of the original's example config (`operator_addr: 0.0.0.0:8993`). */
export const DEFAULT_ADMIN_ADDR = "127.0.0.1:8993"

const server = Options.text("server").pipe(
  Options.withDescription(`Admin endpoint host:port of any replica of the shard (default $${ADMIN_ADDR_ENV}, else ${DEFAULT_ADMIN_ADDR}); a standby's answer is followed to the leader`),
  Options.optional
)
const tokenFile = Options.text("admin-token-file").pipe(
  Options.withDescription(`File holding the admin token the servers were given (or set $${ADMIN_TOKEN_ENV})`),
  Options.optional
)
const caFile = Options.text("ca-file").pipe(
  Options.withDescription(`The cluster CA certificate (pki/<cluster>/ca.crt in the bucket; or set $${CA_FILE_ENV}): the endpoint speaks only TLS 1.3 and the token goes only to a server it signed`),
  Options.optional
)
const certFile = Options.text("cert-file").pipe(
  Options.withDescription(
    `Instead of the admin token: an operator certificate (from nstance-admin cert issue; or set $${CERT_FILE_ENV}), presented at the TLS handshake; ` +
      "it sees and changes only its tenant's instances and groups"
  ),
  Options.optional
)
const keyFile = Options.text("key-file").pipe(
  Options.withDescription(`The private key of --cert-file (or set $${KEY_FILE_ENV})`),
  Options.optional
)
const json = Options.boolean("json").pipe(Options.withDescription("Print JSON for scripts instead of a table"))

const connection = { server, tokenFile, certFile, keyFile, caFile, json }

interface ConnectionFlags {
  readonly server: Option.Option<string>
  readonly tokenFile: Option.Option<string>
  readonly certFile: Option.Option<string>
  readonly keyFile: Option.Option<string>
  readonly caFile: Option.Option<string>
  readonly json: boolean
}

/** The token or the operator certificate: exactly one of them. */
const credential = (flags: ConnectionFlags) =>
  Effect.gen(function* () {
    const token = yield* adminTokenFrom(process.env, Option.getOrUndefined(flags.tokenFile))
    const certificate = yield* operatorCertificateFrom(process.env, Option.getOrUndefined(flags.certFile), Option.getOrUndefined(flags.keyFile))
    if (Option.isSome(token) && Option.isSome(certificate)) {
      return yield* new UsageError({
        message: `give one credential: the admin token (${ADMIN_TOKEN_ENV} or --admin-token-file) or an operator certificate ` +
          `(--cert-file/--key-file or ${CERT_FILE_ENV}/${KEY_FILE_ENV}), not both`
      })
    }
    if (Option.isSome(token)) return { token: token.value }
    if (Option.isSome(certificate)) return { certificate: certificate.value }
    return yield* new UsageError({
      message: `no credentials: set ${ADMIN_TOKEN_ENV} or give --admin-token-file (the token the servers were started with), ` +
        `or give --cert-file and --key-file (an operator certificate from nstance-admin cert issue)`
    })
  })

const resolve = (flags: ConnectionFlags) =>
  Effect.gen(function* () {
    const proof = yield* credential(flags)
    const envAddr = process.env[ADMIN_ADDR_ENV]
    const address = Option.getOrElse(flags.server, () => (envAddr !== undefined && envAddr !== "" ? envAddr : DEFAULT_ADMIN_ADDR))
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(address) && !/^https:\/\//.test(address)) {
      return yield* new UsageError({ message: `--server ${echoValue(address)} must be host:port (the endpoint speaks only TLS)` })
    }
    const caPem = yield* caFrom(process.env, Option.getOrUndefined(flags.caFile))
    return { address, credentials: { ...proof, caPem } }
  })

/** A `NotLeader` that is still there after the client followed the redirect once (or that named no leader). */
const isNotLeader = (error: unknown): error is Error =>
  error instanceof Error && "_tag" in error && error._tag === "NotLeader"

/** Runs `call` against the server; a refused or failed call fails with its one-line message. */
const remote = <A, E>(flags: ConnectionFlags, call: (rpc: AdminRpcClient) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const { address, credentials } = yield* resolve(flags)
    // The RPC client and the Admin group's schemas load only when a remote command runs, so --version and
    // the offline commands start without them.
    const { callAdmin } = yield* Effect.promise(() => import("../admin/AdminClient.js"))
    const result = yield* callAdmin(address, credentials, call).pipe(
      Effect.mapError((error) => (isNotLeader(error) ? new UsageError({ message: `${address}: ${error.message}` }) : error))
    )
    return result.value
  })

const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

/** Columns padded to their widest cell; every cell made printable. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): ReadonlyArray<string> => {
  const all = [header, ...rows].map((row) => row.map((cell) => escapeControl(cell)))
  const widths = header.map((_, i) => Math.max(...all.map((row) => (row[i] ?? "").length)))
  return all.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ").trimEnd())
}

const printLines = (lines: ReadonlyArray<string>) => Effect.forEach(lines, (line) => Console.log(line), { discard: true })

const ago = (at: number | null) => (at === null ? "-" : new Date(at).toISOString().replace(/\.\d{3}Z$/, "Z"))

export const describeStatus = (s: StatusView): ReadonlyArray<string> => [
  `cluster ${s.cluster}, shard ${s.shard}: leader ${s.leader} (term ${s.term}), log seq ${s.seq}${s.logId === undefined ? "" : `, event log ${s.logId}`}`,
  ...(s.ownership === undefined ? [] : [`⚠ ${s.ownership}`]),
  `groups ${s.groups}, desired VMs ${s.desiredVms}, instances ${s.instances}${Object.keys(s.byPhase).length === 0 ? "" : ` (${Object.entries(s.byPhase).map(([phase, n]) => `${phase} ${n}`).join(", ")})`}`,
  ...(s.byPveState === undefined || Object.keys(s.byPveState).length === 0 ? [] : [
    `VMs in PVE at the last GC pass: ${Object.entries(s.byPveState).sort(([a], [b]) => a.localeCompare(b)).map(([state, n]) => `${state} ${n}`).join(", ")}`
  ]),
  `agent registration ${s.registration ? "on" : "off"}`,
  ...(s.preflight === undefined ? [] : [
    `preflight against PVE ${s.preflight.pveVersion ?? "(version unknown)"} at ${ago(s.preflight.at)}: ${summarizeFindings(s.preflight.findings)}`,
    ...s.preflight.findings.map((f) => `  ${formatFinding(f)}`)
  ]),
  ...(s.lastErrors.length === 0 ? [] : ["last errors:", ...s.lastErrors.map((e) => `  ${ago(e.at)}  ${e.instanceId}  ${e.step} (${e.errorClass}): ${e.message}`)]),
  ...((s.held ?? []).length === 0 ? [] : [
    `held (an impossible event in the log; no saga step, delete or GC acts on them until deleted with instance delete):`,
    ...(s.held ?? []).map((h) => `  ${h.instanceId}  VM ${h.vmid ?? "-"}  since seq ${h.seq}: ${h.reason}`)
  ]),
  ...((s.anomalies ?? 0) === 0 ? [] : [
    `impossible events in the log: ${s.anomalies}${(s.recentAnomalies ?? []).length < (s.anomalies ?? 0) ? ` (the newest ${(s.recentAnomalies ?? []).length})` : ""}`,
    ...(s.recentAnomalies ?? []).map((a) => `  seq ${a.seq}  ${a.event}  ${a.instanceId ?? "-"}  VM ${a.vmid ?? "-"}: ${a.reason}`)
  ])
].map(escapeControl)

const groupOf = (i: InstanceView) => `${i.tenant ?? "?"}/${i.group ?? "?"}`

/** A retiring instance: why, and whether its deletion is announced yet. */
const retirementNote = (i: InstanceView): string =>
  i.retirement === undefined || i.retirement === null || i.phase === "deleting"
    ? ""
    : i.drain === undefined || i.drain === null
    ? `retiring (${i.retirement.reason}): replacement first`
    : `pending deletion (${i.retirement.reason}) at ${new Date(i.drain.deleteAt).toISOString()}`

export const instanceTable = (list: ReadonlyArray<InstanceView>) =>
  table(
    ["INSTANCE", "GROUP", "PHASE", "NODE", "VMID", "IPS", "NOTE"],
    list.map((i) => [
      i.id,
      groupOf(i),
      // PVE lists a paused guest as running: the phase alone would hide it.
      i.pveState === "paused" || i.pveState === "suspended" ? `${i.phase} (${i.pveState})` : i.phase,
      i.node ?? "-",
      i.vmid === null ? "-" : String(i.vmid),
      i.ips.length === 0 ? "-" : i.ips.join(","),
      [
        i.held === undefined || i.held === null ? "" : `HELD since seq ${i.held.seq}: ${i.held.reason}`,
        i.reason === "operator" ? "operator" : "",
        i.adopted ? "adopted" : "",
        retirementNote(i),
        i.deleteReason === null ? "" : `delete: ${i.deleteReason}`,
        i.lastError === null ? "" : `last error: ${i.lastError.step}: ${i.lastError.message}`
      ].filter((x) => x !== "").join("; ")
    ])
  )

export const groupTable = (list: ReadonlyArray<GroupView>) =>
  table(
    ["GROUP", "TEMPLATE", "SIZE", "LIVE", "RUNNING", "OUTDATED", "RETIRING", "SOURCE", "INSTANCE TYPE"],
    list.map((g) => [
      `${g.tenant}/${g.group}`,
      g.template,
      String(g.size),
      String(g.live),
      String(g.running),
      g.outdated === undefined ? "-" : String(g.outdated),
      g.retiring === undefined ? "-" : String(g.retiring),
      g.source,
      g.instanceType ?? "-"
    ])
  )

const describeEvent = (e: WatchEvent) =>
  escapeControl(
    `${String(e.seq).padStart(6)}  ${e.instanceId}  ${`${e.tenant ?? "?"}/${e.group ?? "?"}`}  ${e.status ?? e.phase}` +
      `${e.vmid === null ? "" : `  VM ${e.vmid} on ${e.node ?? "?"}`}${e.detail === "" ? "" : `  ${e.detail}`}`
  )

/** `tenant/group` → its parts. */
const groupRef = (text: string) => {
  const match = /^([^/\s]+)\/([^/\s]+)$/.exec(text)
  return match === null
    ? Effect.fail(new UsageError({ message: `${echoValue(text)} must be tenant/group` }))
    : Effect.succeed({ tenant: match[1] ?? "", group: match[2] ?? "" })
}

// ---------------------------------------------------------------------------------------------------------

const statusCommand = Command.make("status", connection, (flags) =>
  Effect.gen(function* () {
    const status = yield* remote(flags, (rpc) => rpc.Status())
    yield* flags.json ? printJson(status) : printLines(describeStatus(status))
  })
).pipe(Command.withDescription(
  "Show the running shard: leader, term, log seq, instances by phase, last errors, and what the leader's last preflight " +
    "against PVE found (PVE version; ✗ errors and ⚠ warnings naming node, storage, bridge, template or privilege) (from the leader)"
))

const tenantFilter = Options.text("tenant").pipe(Options.withDescription("Only this tenant's instances"), Options.optional)
const groupFilter = Options.text("group").pipe(Options.withDescription("Only this group's instances (group key)"), Options.optional)

const instancesCommand = Command.make("instances", { ...connection, tenant: tenantFilter, group: groupFilter }, (flags) =>
  Effect.gen(function* () {
    const list = yield* remote(flags, (rpc) =>
      rpc.ListInstances({ ...Option.match(flags.tenant, { onNone: () => ({}), onSome: (tenant) => ({ tenant }) }), ...Option.match(flags.group, { onNone: () => ({}), onSome: (group) => ({ group }) }) }))
    if (flags.json) return yield* printJson(list)
    if (list.length === 0) return yield* Console.log("no instances")
    yield* printLines(instanceTable(list))
  })
).pipe(Command.withDescription("List the shard's instances as the leader's log has them (phase, node, VMID, IPs, last error)"))

const groupsCommand = Command.make("groups", connection, (flags) =>
  Effect.gen(function* () {
    const list = yield* remote(flags, (rpc) => rpc.ListGroups())
    if (flags.json) return yield* printJson(list)
    if (list.length === 0) return yield* Console.log("no groups")
    yield* printLines(groupTable(list))
  })
).pipe(Command.withDescription("List the groups the leader keeps at size (config.jsonc and dynamic groups.jsonc merged), with live and running counts"))

const groupArg = Args.text({ name: "tenant/group" }).pipe(Args.withDescription("The group, as tenant/group"))
const template = Options.text("template").pipe(Options.withDescription("Template of a new dynamic group"), Options.optional)
const size = Options.integer("size").pipe(Options.withDescription("Desired number of VMs (left as it is when not given)"), Options.optional)
const instanceType = Options.text("instance-type").pipe(Options.withDescription("Instance type override, e.g. cpu:2,memory:2048,disk:20"), Options.optional)
const subnetPool = Options.text("subnet-pool").pipe(Options.withDescription("Subnet pool of a new dynamic group"), Options.optional)
const vars = Options.text("vars").pipe(Options.withDescription("Variables to add or override, as k=v,k2=v2"), Options.optional)

const parseVars = (text: string) =>
  Effect.forEach(text.split(","), (pair) => {
    const eq = pair.indexOf("=")
    return eq <= 0
      ? Effect.fail(new UsageError({ message: `--vars: ${echoValue(pair)} must be name=value` }))
      : Effect.succeed([pair.slice(0, eq), pair.slice(eq + 1)] as const)
  }).pipe(Effect.map((pairs) => Object.fromEntries(pairs)))

const groupSetCommand = Command.make("set", { ...connection, group: groupArg, template, size, instanceType, subnetPool, vars }, (flags) =>
  Effect.gen(function* () {
    const ref = yield* groupRef(flags.group)
    const parsedVars = Option.isSome(flags.vars) ? yield* parseVars(flags.vars.value) : undefined
    const result = yield* remote(flags, (rpc) =>
      rpc.UpsertGroup({
        ...ref,
        ...Option.match(flags.template, { onNone: () => ({}), onSome: (template) => ({ template }) }),
        ...Option.match(flags.size, { onNone: () => ({}), onSome: (size) => ({ size }) }),
        ...Option.match(flags.instanceType, { onNone: () => ({}), onSome: (instanceType) => ({ instanceType }) }),
        ...Option.match(flags.subnetPool, { onNone: () => ({}), onSome: (subnetPool) => ({ subnetPool }) }),
        ...(parsedVars === undefined ? {} : { vars: parsedVars })
      }))
    if (flags.json) return yield* printJson(result)
    const g = result.group
    yield* Console.log(escapeControl(`group ${g.tenant}/${g.group} (${g.source}): size ${g.size}, template ${g.template}; ${g.live} live, ${g.running} running — the leader converges to it now`))
  })
).pipe(Command.withDescription(
  "Create or change a dynamic group in groups.jsonc (written with If-Match, so concurrent changes are never lost): " +
    "only the flags given change (a missing --size keeps the size); for a group of config.jsonc only --size, --instance-type and --vars"
))

const groupDeleteCommand = Command.make("delete", { ...connection, group: groupArg }, (flags) =>
  Effect.gen(function* () {
    const ref = yield* groupRef(flags.group)
    const result = yield* remote(flags, (rpc) => rpc.DeleteGroup(ref))
    if (flags.json) return yield* printJson(result)
    yield* Console.log(escapeControl(
      !result.deleted
        ? `group ${flags.group} has no dynamic entry; nothing changed`
        : result.staticRemains
        ? `dynamic overrides of ${flags.group} removed; its config.jsonc definition stays in force`
        : `dynamic group ${flags.group} deleted; its VMs are deleted by the leader`
    ))
  })
).pipe(Command.withDescription("Delete a dynamic group (or the dynamic overrides of a config.jsonc group) from groups.jsonc"))

const groupCommand = Command.make("group").pipe(
  Command.withDescription("Change dynamic groups on the running shard"),
  Command.withSubcommands([groupSetCommand, groupDeleteCommand])
)

const instanceIdArg = Args.text({ name: "instance-id" }).pipe(Args.withDescription("The instance ID (as `instances` lists it)"))

const instanceShowCommand = Command.make("show", { ...connection, id: instanceIdArg }, (flags) =>
  Effect.gen(function* () {
    const instance = yield* remote(flags, (rpc) => rpc.GetInstance({ instanceId: flags.id }))
    if (flags.json) return yield* printJson(instance)
    yield* printLines(instanceTable([instance]))
  })
).pipe(Command.withDescription("Show one instance as the leader's log has it"))

const instanceCreateCommand = Command.make("create", { ...connection, group: groupArg }, (flags) =>
  Effect.gen(function* () {
    const ref = yield* groupRef(flags.group)
    const result = yield* remote(flags, (rpc) => rpc.CreateInstance(ref))
    if (flags.json) return yield* printJson(result)
    yield* Console.log(escapeControl(`${result.instanceId}: requested in ${flags.group} (on top of the group's size; delete it with instance delete)`))
  })
).pipe(Command.withDescription("Request one more instance in a group, with the group's template and settings, beyond its size"))

const instanceDeleteCommand = Command.make("delete", { ...connection, id: instanceIdArg }, (flags) =>
  Effect.gen(function* () {
    const result = yield* remote(flags, (rpc) => rpc.DeleteInstance({ instanceId: flags.id }))
    if (flags.json) return yield* printJson(result)
    yield* Console.log(escapeControl(result.alreadyDeleting
      ? `${result.instanceId}: already being deleted`
      : `${result.instanceId}: delete requested; the leader stops and removes the VM and its ISO (a group member is replaced)`))
  })
).pipe(Command.withDescription("Delete one instance through the shard's delete saga (stop, remove the ISO and the VM)"))

const instanceAckDrainCommand = Command.make("ack-drain", { ...connection, id: instanceIdArg }, (flags) =>
  Effect.gen(function* () {
    const result = yield* remote(flags, (rpc) => rpc.AcknowledgeDrain({ instanceId: flags.id }))
    if (flags.json) return yield* printJson(result)
    yield* Console.log(escapeControl(result.alreadyDeleting
      ? `${result.instanceId}: already being deleted`
      : `${result.instanceId}: drain acknowledged; the leader deletes it now instead of at its announced time`))
  })
).pipe(Command.withDescription(
  "Acknowledge the drain of an instance pending deletion (watch shows pending_deletion): it is deleted now instead of at its delete_at"
))

const instanceCommand = Command.make("instance").pipe(
  Command.withDescription("Show, create or delete one instance on the running shard, or acknowledge its drain"),
  Command.withSubcommands([instanceShowCommand, instanceCreateCommand, instanceDeleteCommand, instanceAckDrainCommand])
)

const refreshCommand = Command.make("refresh", connection, (flags) =>
  Effect.gen(function* () {
    const result = yield* remote(flags, (rpc) => rpc.RefreshConfig())
    if (flags.json) return yield* printJson(result)
    yield* Console.log(`config reloaded: ${result.groups} groups, ${result.desiredVms} desired VMs`)
    yield* Effect.forEach(result.warnings, (w) => Console.log(`⚠ ${escapeControl(w)}`), { discard: true })
  })
).pipe(Command.withDescription("Make the leader re-read config.jsonc and groups.jsonc now (it also polls them every few seconds)"))

const validateCommand = Command.make("validate", connection, (flags) =>
  Effect.gen(function* () {
    const result = yield* remote(flags, (rpc) => rpc.ValidateConfig())
    if (flags.json) return yield* printJson(result)
    if (!result.valid) {
      yield* Effect.forEach(result.problems, (p) => Console.error(`✗ ${escapeControl(p)}`), { discard: true })
      return yield* new UsageError({ message: `${result.key}: the shard configuration in the bucket is not valid` })
    }
    yield* Console.log(escapeControl(`✓ ${result.key} is valid: ${result.groups} groups, ${result.desiredVms} desired VMs`))
    yield* Effect.forEach(result.warnings, (w) => Console.log(`⚠ ${escapeControl(w)}`), { discard: true })
  })
).pipe(Command.withDescription("Validate the shard's config in the bucket (with its dynamic groups), as the servers would load it"))

const nonceCommand = Command.make("nonce", { ...connection, id: instanceIdArg }, (flags) =>
  Effect.gen(function* () {
    const result = yield* remote(flags, (rpc) => rpc.MintNonce({ instanceId: flags.id }))
    if (flags.json) return yield* printJson(result)
    yield* Console.log(result.nonce)
  })
).pipe(Command.withDescription(
  "Mint a fresh registration nonce for an instance (its previous one stops working) and print it, for re-seeding an agent by hand; needs registration on"
))

const watchCommand = Command.make("watch", connection, (flags) =>
  Effect.gen(function* () {
    const { address, credentials } = yield* resolve(flags)
    const { watchFollowingLeader } = yield* Effect.promise(() => import("../admin/watchFollow.js"))
    return yield* watchFollowingLeader(address, credentials, {
      event: (event) => (flags.json ? Console.log(JSON.stringify(event)) : Console.log(describeEvent(event))),
      // On stderr, so that stdout stays one event per line (and JSON with --json).
      note: (line) => Console.error(escapeControl(line))
    }).pipe(Effect.mapError((error) => (isNotLeader(error) ? new UsageError({ message: `${address}: ${error.message}` }) : error)))
  })
).pipe(Command.withDescription(
  "Follow what the leader records (instances requested, placed, running, deleted, failed steps) until Ctrl-C; --json prints one JSON object per line. " +
    "At a leader change it finds the new leader (through --server, retrying for up to a minute) and says on stderr which changes it may not have shown"
))

const fromLog = Options.text("from-log").pipe(Options.withDescription("The other event log's ID, as `status` or the leader's error log names it (log…)"))

const adoptCommand = Command.make("adopt", { ...connection, fromLog }, (flags) =>
  Effect.gen(function* () {
    if (!/^log[0-9a-hj-km-np-tv-z]{26}$/.test(flags.fromLog)) {
      return yield* new UsageError({ message: `--from-log ${JSON.stringify(flags.fromLog.slice(0, 64))} is not an event log ID ("log" and 26 base32 characters, as status shows it)` })
    }
    const result = yield* remote(flags, (rpc) => rpc.AdoptVms({ fromLog: flags.fromLog }))
    if (flags.json) return yield* printJson(result)
    const count = result.adopted.length === 1 ? "1 VM" : `${result.adopted.length} VMs`
    yield* Console.log(escapeControl(`${count} of event log ${result.fromLog} adopted into this shard's log; the leader manages them from now on`))
    yield* printLines(table(["INSTANCE", "VMID", "NODE"], result.adopted.map((vm) => [vm.instanceId, String(vm.vmid), vm.node])))
    yield* Effect.forEach(result.unstamped, (vm) =>
      Console.error(escapeControl(`⚠ ${vm.instanceId} (VM ${vm.vmid}): adopted, but its notes still name log ${result.fromLog}: ${vm.reason}`)), { discard: true })
  })
).pipe(Command.withDescription(
  "Take over the VMs with this shard's tags whose notes name another event log (a server that ran this shard from another bucket or prefix): " +
    "each is recorded as adopted and its notes are rewritten to name this log. The leader never does this by itself; a new log that meets " +
    "another log's VMs creates and deletes nothing until this is run (or that other server is stopped)"
))

export const remoteCommands = [statusCommand, instancesCommand, groupsCommand, groupCommand, instanceCommand, refreshCommand, validateCommand, nonceCommand, watchCommand, adoptCommand] as const
