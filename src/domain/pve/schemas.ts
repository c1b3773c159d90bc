/**
 * The shapes PVE answers with, decoded at the boundary. PVE's Perl side is loose about JSON types: the
 * same field is a number on one endpoint and a string on another (`nextid` is `"100"`), booleans come as
 * 0/1, "0"/"1" or true/false, and optional fields are simply absent. Those fields decode leniently; names,
 * ids and enums decode strictly; unknown extra fields are ignored so a newer PVE does not break us.
 */
import { ParseResult, Schema } from "effect"
import { UPID_PATTERN } from "./upid.js"

/** A number PVE may send as a JSON number or as a decimal string; anything else fails with one clear message. */
export const NumberFromStringOrNumber = Schema.transformOrFail(Schema.Unknown, Schema.Number, {
  strict: true,
  decode: (input, _options, ast) => {
    const value = typeof input === "number" ? input : typeof input === "string" && input.trim() !== "" ? Number(input) : Number.NaN
    return Number.isFinite(value)
      ? ParseResult.succeed(value)
      : ParseResult.fail(new ParseResult.Type(ast, input, "expected a finite number or a numeric string"))
  },
  encode: (value) => ParseResult.succeed(value)
})

export const IntFromStringOrNumber = NumberFromStringOrNumber.pipe(
  Schema.filter((n) => Number.isInteger(n), { message: () => "expected an integer" })
)

/** A PVE boolean: 0/1, "0"/"1" or true/false. */
export const BooleanFromPve = Schema.transform(
  Schema.Union(Schema.Literal(0, 1, "0", "1"), Schema.Boolean),
  Schema.Boolean,
  { strict: true, decode: (v) => v === 1 || v === "1" || v === true, encode: (b) => (b ? 1 : 0) }
)

const optNumber = Schema.optional(NumberFromStringOrNumber)
const optInt = Schema.optional(IntFromStringOrNumber)
const optString = Schema.optional(Schema.String)
const optBool = Schema.optional(BooleanFromPve)

/** A task id as PVE returns it from every asynchronous call. */
export const Upid = Schema.String.pipe(Schema.pattern(UPID_PATTERN, { message: () => "expected a UPID (UPID:node:pid:pstart:starttime:type:id:user:)" }), Schema.brand("Upid"))
export type Upid = typeof Upid.Type

/** `{"data": …}`, PVE's envelope around every answer. */
export const Envelope = <A, I, R>(data: Schema.Schema<A, I, R>) => Schema.Struct({ data })

/** `GET /cluster/resources?type=node` entry. Offline nodes omit the usage fields. */
export const NodeResource = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("node"),
  node: Schema.String,
  status: Schema.String,
  cpu: optNumber,
  maxcpu: optNumber,
  mem: optNumber,
  maxmem: optNumber,
  disk: optNumber,
  maxdisk: optNumber,
  uptime: optNumber
})
export type NodeResource = typeof NodeResource.Type

/** `GET /cluster/resources?type=vm` entry (qemu and lxc guests). */
export const VmResource = Schema.Struct({
  id: Schema.String,
  type: Schema.String,
  vmid: IntFromStringOrNumber,
  node: Schema.String,
  status: Schema.String,
  name: optString,
  tags: optString,
  template: Schema.optionalWith(BooleanFromPve, { default: () => false }),
  lock: optString,
  pool: optString,
  hastate: optString,
  cpu: optNumber,
  maxcpu: optNumber,
  mem: optNumber,
  maxmem: optNumber,
  maxdisk: optNumber,
  uptime: optNumber
})
export type VmResource = typeof VmResource.Type

/**
 * `GET /cluster/resources` storage entry: one per storage and node it is enabled on (PVE leaves disabled ones
 * out). `shared` is what decides whether PVE takes a storage's lock cluster-wide.
 */
export const StorageResource = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("storage"),
  storage: Schema.String,
  node: Schema.String,
  status: optString,
  content: optString,
  plugintype: optString,
  shared: optBool,
  disk: optNumber,
  maxdisk: optNumber
})
export type StorageResource = typeof StorageResource.Type

/**
 * A guest of the unfiltered `/cluster/resources` read: only the fields nstance reads from it (identity, place,
 * power state, name, tags, template flag, lock and pool), each checked as strictly as in `VmResource`; the usage
 * figures are left undecoded. A new leader decodes this list for every VM of the cluster before it acts: at
 * 9,000 VMs the six usage numbers (each a string-or-number transformation) cost about half the decode.
 */
export const ClusterVmResource = Schema.Struct({
  id: VmResource.fields.id,
  type: Schema.Literal("qemu", "lxc"),
  vmid: VmResource.fields.vmid,
  node: VmResource.fields.node,
  status: VmResource.fields.status,
  name: VmResource.fields.name,
  tags: VmResource.fields.tags,
  template: VmResource.fields.template,
  lock: VmResource.fields.lock,
  pool: VmResource.fields.pool
})
export type ClusterVmResource = typeof ClusterVmResource.Type

/** The resource types the unfiltered `/cluster/resources` read is decoded for; every other type is skipped. */
const READ_RESOURCE_TYPES: ReadonlyArray<string> = ["node", "qemu", "lxc", "storage"]

/**
 * One entry of the unfiltered `GET /cluster/resources`: a node, a guest or a storage, each decoded as strictly
 * as its filtered read; pools, SDN and network entries (and types a newer PVE adds) only need a `type`.
 */
export const ClusterResourceEntry = Schema.Union(
  NodeResource,
  ClusterVmResource,
  StorageResource,
  Schema.Struct({ type: Schema.String.pipe(Schema.filter((type) => !READ_RESOURCE_TYPES.includes(type), { message: () => "a node, guest or storage entry that does not decode" })) })
)
export type ClusterResourceEntry = typeof ClusterResourceEntry.Type

/** `GET /cluster/status`: one `cluster` entry (absent on a single node) and one per node. */
export const ClusterStatusEntry = Schema.Struct({
  type: Schema.Literal("cluster", "node"),
  id: Schema.String,
  name: Schema.String,
  nodes: optInt,
  quorate: optBool,
  version: optInt,
  nodeid: optInt,
  ip: optString,
  online: optBool,
  local: optBool,
  level: optString
})
export type ClusterStatusEntry = typeof ClusterStatusEntry.Type

const MemoryFigures = Schema.Struct({
  total: NumberFromStringOrNumber,
  used: NumberFromStringOrNumber,
  free: optNumber,
  available: optNumber
})

/** `GET /nodes/{node}/status`: only the figures nstance reads are required. */
export const NodeStatus = Schema.Struct({
  cpu: NumberFromStringOrNumber,
  memory: MemoryFigures,
  uptime: optNumber,
  pveversion: optString,
  kversion: optString,
  loadavg: Schema.optional(Schema.Array(Schema.Union(Schema.String, Schema.Number))),
  cpuinfo: Schema.optional(Schema.Struct({ cpus: optInt, cores: optInt, sockets: optInt, model: optString }))
})
export type NodeStatus = typeof NodeStatus.Type

/** `GET /nodes/{node}/qemu` entry. */
export const QemuListEntry = Schema.Struct({
  vmid: IntFromStringOrNumber,
  status: Schema.String,
  name: optString,
  tags: optString,
  template: Schema.optionalWith(BooleanFromPve, { default: () => false }),
  lock: optString,
  qmpstatus: optString,
  cpus: optNumber,
  maxmem: optNumber,
  mem: optNumber,
  maxdisk: optNumber,
  uptime: optNumber,
  pid: optInt
})
export type QemuListEntry = typeof QemuListEntry.Type

/** `GET …/qemu/{vmid}/status/current`. A paused guest is `status: running` with `qmpstatus: paused`. */
export const VmStatusCurrent = Schema.Struct({
  vmid: IntFromStringOrNumber,
  status: Schema.String,
  qmpstatus: optString,
  name: optString,
  tags: optString,
  lock: optString,
  template: Schema.optionalWith(BooleanFromPve, { default: () => false }),
  agent: optBool,
  cpus: optNumber,
  maxmem: optNumber,
  mem: optNumber,
  maxdisk: optNumber,
  uptime: optNumber,
  pid: optInt
})
export type VmStatusCurrent = typeof VmStatusCurrent.Type

/**
 * `GET …/qemu/{vmid}/config`: the keys nstance reads are typed, every other key is kept as PVE sent it
 * (drives, `scsihw`, `smbios1`…) so callers can look at, say, `scsi0` or `net1`.
 */
export const VmConfig = Schema.Struct(
  {
    name: optString,
    tags: optString,
    description: optString,
    cores: optInt,
    sockets: optInt,
    // `[current=]<MiB>` since PVE 8 (a string); older releases send a number.
    memory: Schema.optional(Schema.Union(Schema.String, Schema.Number.pipe(Schema.int()))),
    onboot: optBool,
    template: optBool,
    boot: optString,
    net0: optString,
    ide2: optString,
    scsi0: optString,
    lock: optString,
    digest: optString
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type VmConfig = typeof VmConfig.Type

/** `GET /nodes/{node}/tasks/{upid}/status`. */
export const TaskStatus = Schema.Struct({
  status: Schema.Literal("running", "stopped"),
  exitstatus: optString,
  upid: Schema.String,
  node: Schema.String,
  type: Schema.String,
  id: Schema.String,
  user: Schema.String,
  pid: optInt,
  pstart: optInt,
  starttime: optInt
})
export type TaskStatus = typeof TaskStatus.Type

/** `GET /nodes/{node}/tasks` entry: `status` (the exit status) and `endtime` only once the task ended. */
export const TaskListEntry = Schema.Struct({
  upid: Schema.String,
  node: Schema.String,
  type: Schema.String,
  id: Schema.String,
  user: Schema.String,
  status: optString,
  starttime: optInt,
  endtime: optInt
})
export type TaskListEntry = typeof TaskListEntry.Type

/** `GET /nodes/{node}/storage` entry. */
export const StorageEntry = Schema.Struct({
  storage: Schema.String,
  type: Schema.String,
  content: Schema.String,
  enabled: optBool,
  active: optBool,
  shared: optBool,
  total: optNumber,
  used: optNumber,
  avail: optNumber
})
export type StorageEntry = typeof StorageEntry.Type

/**
 * `GET /nodes/{node}/network` entry: an interface of the node (with `type=any_bridge`: its Linux and OVS
 * bridges and SDN VNets). Only what nstance reads is typed; PVE sends many more fields.
 */
export const NetworkInterface = Schema.Struct({
  iface: Schema.String,
  type: Schema.String,
  active: optBool,
  autostart: optBool,
  exists: optBool,
  bridge_ports: optString,
  bridge_vlan_aware: optBool,
  cidr: optString
})
export type NetworkInterface = typeof NetworkInterface.Type

/** `GET /nodes/{node}/storage/{storage}/content` entry. */
export const StorageContentEntry = Schema.Struct({
  volid: Schema.String,
  format: Schema.String,
  size: NumberFromStringOrNumber,
  content: optString,
  ctime: optInt,
  vmid: optInt,
  parent: optString,
  used: optNumber
})
export type StorageContentEntry = typeof StorageContentEntry.Type

/** `GET /nodes/{node}/storage/{storage}/content/{volume}`. */
export const VolumeAttributes = Schema.Struct({
  format: Schema.String,
  path: Schema.String,
  size: NumberFromStringOrNumber,
  used: optNumber,
  protected: optBool,
  notes: optString
})
export type VolumeAttributes = typeof VolumeAttributes.Type

/** `GET /version`. */
export const PveVersion = Schema.Struct({ version: Schema.String, release: Schema.String, repoid: optString })
export type PveVersion = typeof PveVersion.Type

/** `GET /access/permissions`: path → privilege → propagate flag. */
export const Permissions = Schema.Record({
  key: Schema.String,
  value: Schema.Record({ key: Schema.String, value: BooleanFromPve })
})
export type Permissions = typeof Permissions.Type

/** `GET /cluster/nextid`: PVE sends the VMID as a JSON string. */
export const NextId = IntFromStringOrNumber

/** Answers of asynchronous calls: a UPID, or null where PVE may finish synchronously. */
export const UpidAnswer = Upid
export const OptionalUpidAnswer = Schema.NullOr(Upid)
