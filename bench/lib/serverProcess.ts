/**
 * An `nstance-server` child process for benches that measure it from outside: its JSON log lines on stdout
 * decoded as they come (each with the time it says it was written), waits for a line, and `/proc` figures.
 * Runs the compiled server (`npm run build`).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream, readFileSync, type WriteStream } from "node:fs"
import { createInterface } from "node:readline"
import { Option, Schema } from "effect"

/** One line of `--log-format json` (Effect's JSON logger): what the benches read of it. */
const JsonLine = Schema.parseJson(Schema.Struct({
  message: Schema.Unknown,
  logLevel: Schema.String,
  timestamp: Schema.String,
  annotations: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), { default: () => ({}) })
}))
const decodeLine = Schema.decodeUnknownOption(JsonLine)

export interface LogLine {
  readonly at: number
  readonly level: string
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}

export interface ServerProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly lines: ReadonlyArray<LogLine>
  /** The first line from `from` (index) on that `match` accepts; rejects after `timeoutMs` or when the process exits. */
  readonly waitFor: (match: (line: LogLine) => boolean, timeoutMs: number, from?: number) => Promise<LogLine>
  readonly exited: Promise<number | null>
}

export const startServer = (root: string, args: ReadonlyArray<string>, options: { readonly nodeArgs?: ReadonlyArray<string>; readonly logFile?: string } = {}): ServerProcess => {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), "bin/nstance-server.js", ...args, "--log-format", "json"], {
    cwd: root,
    stdio: ["ignore", "pipe", "inherit"]
  })
  const pid = child.pid
  if (pid === undefined) throw new Error("nstance-server did not start")
  const lines: Array<LogLine> = []
  const waiters = new Set<() => void>()
  const copy: WriteStream | undefined = options.logFile === undefined ? undefined : createWriteStream(options.logFile)
  const stdout = child.stdout
  if (stdout === null) throw new Error("nstance-server has no stdout")
  createInterface({ input: stdout }).on("line", (text) => {
    copy?.write(`${text}\n`)
    const decoded = decodeLine(text)
    if (Option.isNone(decoded)) return
    const { annotations, logLevel, message, timestamp } = decoded.value
    lines.push({ at: Date.parse(timestamp), level: logLevel, message: typeof message === "string" ? message : JSON.stringify(message), annotations })
    for (const wake of waiters) wake()
  })
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => {
    copy?.end()
    resolve(code)
    for (const wake of waiters) wake()
  }))
  const waitFor = (match: (line: LogLine) => boolean, timeoutMs: number, from = 0) =>
    new Promise<LogLine>((resolve, reject) => {
      let index = from
      const check = () => {
        for (; index < lines.length; index++) {
          const line = lines[index]!
          if (match(line)) {
            done()
            return resolve(line)
          }
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          done()
          reject(new Error(`nstance-server (pid ${pid}) exited (${child.exitCode ?? child.signalCode}) while a bench waited for a log line`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`no such log line from nstance-server (pid ${pid}) within ${timeoutMs} ms`))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  return { child, pid, lines, waitFor, exited }
}

/** What `/proc/<pid>` says of a process: resident and peak-resident MB, and CPU seconds used so far. */
export const procFigures = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN)
  // Fields 14 and 15 of /proc/<pid>/stat (utime, stime) in clock ticks of 1/100 s; the name field may hold spaces.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const ticks = Number(fields[11]) + Number(fields[12])
  return { rssMB: kb("VmRSS") / 1024, peakRssMB: kb("VmHWM") / 1024, cpuSeconds: ticks / 100 }
}

/** Loopback bind and advertise addresses for one replica: five ports from `base`. */
export const loopbackAddresses = (base: number) => {
  const addr = (offset: number) => `127.0.0.1:${base + offset}`
  const addresses = { health_addr: addr(0), election_addr: addr(1), registration_addr: addr(2), operator_addr: addr(3), agent_addr: addr(4) }
  return { bind: addresses, advertise: addresses }
}

export interface ShardConfigInput {
  readonly clusterId: string
  readonly shard: string
  /** First of the replica's five loopback ports. */
  readonly portBase: number
  /** Group sizes by tenant, then group; every group uses template `web` (kind `web`, 1 core, 512 MiB). */
  readonly groups: ReadonlyMap<string, ReadonlyMap<string, number>>
  readonly gcInterval?: string
}

/** A shard config (JSON, which is JSONC) for the benches' simulated clusters: default election timings. */
export const shardConfigText = (input: ShardConfigInput): string => {
  const groups: Record<string, Record<string, { template: string; size: number }>> = {}
  for (const [tenant, sizes] of input.groups) {
    groups[tenant] = Object.fromEntries([...sizes].map(([group, size]) => [group, { template: "web", size }]))
  }
  return JSON.stringify({
    cluster: { id: input.clusterId, leader_election: { frequent_interval: "5s", infrequent_interval: "30s", leader_timeout: "15s" } },
    shard: {
      id: input.shard,
      infra: { provider: "proxmox", region: "dc1", zone: input.shard, options: { insecure_tls: false, cloud_init_iso_storage: "local" } },
      ...loopbackAddresses(input.portBase),
      subnet_pools: { nodes: ["vmbr0"] },
      garbage_collection: { interval: input.gcInterval ?? "2m", registration_timeout: "5m" },
      // The default (5,000) is below the 9,000 instances a 10k log leaves running.
      limits: { max_instances: 20_000 },
      request_timeout: "30s",
      create_rate_limit: "100ms",
      health_check_interval: "1m"
    },
    defaults: { args: { StoragePool: "local-lvm", TemplateName: "debian-13-template" } },
    templates: { web: { kind: "web", instance_type: "cpu:1,memory:512,disk:10", subnet_pool: "nodes" } },
    groups
  }, null, 2)
}
