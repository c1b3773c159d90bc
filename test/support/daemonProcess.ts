/**
 * The compiled `nstance-server` as a real process on a file store and the HTTP simulator, for the tests
 * only a process can show (signals, exit status, two processes on one bucket): a config derived from the
 * example with every endpoint on a loopback address of the test's choosing and election timings of about a
 * second, and a handle that collects the JSON log lines and waits for conditions on them.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { applyEdits, modify, parse } from "jsonc-parser"
import { EXAMPLE_CONFIG } from "../../src/app/embedded.js"
import { collectJsonMessages } from "./spawn.js"

export interface DaemonPorts {
  readonly health: number
  readonly election: number
  readonly registration: number
  readonly operator: number
  readonly agent: number
}

export interface DaemonConfigOptions {
  /** The loopback address every endpoint binds (127.0.0.1, 127.0.0.2, …: replicas on one host). */
  readonly host: string
  readonly ports: DaemonPorts
  /** Every group of the example gets this size (default 0: no PVE work). */
  readonly groupSize?: number
}

/**
 * Election timings: renew every 1 s, a silent record dead after 5 s (a leader fences itself after 4 s without
 * a renewal: far enough from 1 s that a loaded test machine does not make it lose its lease).
 */
export const FAST_ELECTION = { frequent_interval: "1s", infrequent_interval: "5s", leader_timeout: "5s" } as const

/** `text` (a shard config) with `FAST_ELECTION`; a cluster-level copy of the timings is dropped so it cannot win. */
export const withFastElection = (text: string): string => {
  const without = applyEdits(text, modify(text, ["cluster", "leader_election"], undefined, {}))
  return applyEdits(without, modify(without, ["shard", "leader_election"], FAST_ELECTION, {}))
}

/** The example config with the options applied (advertised operator and election hosts left to `--advertise-host`). */
export const daemonConfigText = (options: DaemonConfigOptions): string => {
  let text = withFastElection(readFileSync(EXAMPLE_CONFIG, "utf8"))
  const set = (path: ReadonlyArray<string>, value: unknown) => { text = applyEdits(text, modify(text, [...path], value, {})) }
  const { host, ports } = options
  for (const [name, port] of [["health", ports.health], ["election", ports.election], ["registration", ports.registration], ["operator", ports.operator], ["agent", ports.agent]] as const) {
    set(["shard", "bind", `${name}_addr`], `${host}:${port}`)
  }
  set(["shard", "advertise", "operator_addr"], `:${ports.operator}`)
  const entries = (value: unknown): ReadonlyArray<readonly [string, unknown]> => (typeof value === "object" && value !== null ? Object.entries(value) : [])
  const groups = entries(parse(text)).find(([key]) => key === "groups")?.[1]
  for (const [tenant, byName] of entries(groups)) {
    for (const [group] of entries(byName)) set(["groups", tenant, group, "size"], options.groupSize ?? 0)
  }
  return text
}

export interface DaemonProcess {
  readonly child: ChildProcess
  /** The `message` of every JSON log line so far. */
  readonly messages: ReadonlyArray<string>
  readonly stderr: () => string
  /** Everything written to stdout so far. */
  readonly stdout: () => string
  readonly exited: Promise<{ readonly status: number | null; readonly signal: NodeJS.Signals | null }>
  /** Resolves once `condition` holds (checked every 50 ms); rejects after `timeoutMs` with the last log lines. */
  readonly waitFor: (what: string, condition: () => boolean, timeoutMs?: number) => Promise<void>
  /** Sends `signal` unless the process has ended. */
  readonly signal: (signal: NodeJS.Signals) => void
}

/**
 * `node <script> args…` with only PATH and `env` in its environment; SIGKILLed after `killAfterMs`. With
 * `descriptorLimit`, the process starts with that soft and hard open-files limit (as `ulimit -n` sets it).
 */
export const startProcess = (
  script: string,
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>>,
  killAfterMs = 30_000,
  descriptorLimit?: number
): DaemonProcess => {
  const options = { env: { PATH: process.env["PATH"] ?? "", ...env } }
  const child = descriptorLimit === undefined
    ? spawn(process.execPath, [script, ...args], options)
    : spawn("/bin/sh", ["-c", `ulimit -n ${descriptorLimit} && exec "$@"`, "sh", process.execPath, script, ...args], options)
  const { messages } = collectJsonMessages(child.stdout)
  let stderr = ""
  let stdout = ""
  child.stdout.on("data", (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on("data", (chunk: Buffer) => { stderr += chunk.toString() })
  const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs)
  const exited = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (status, signal) => { clearTimeout(timer); resolve({ status, signal }) }))
  const waitFor = async (what: string, condition: () => boolean, timeoutMs = 8_000) => {
    const deadline = Date.now() + timeoutMs
    while (!condition()) {
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${what}; the process logged:\n${messages.slice(-20).join("\n")}\nstderr:\n${stderr}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  const signal = (name: NodeJS.Signals) => { if (child.exitCode === null && child.signalCode === null) child.kill(name) }
  return { child, messages, stderr: () => stderr, stdout: () => stdout, exited, waitFor, signal }
}

export const startServerProcess = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>, killAfterMs?: number, descriptorLimit?: number) =>
  startProcess("bin/nstance-server.js", args, env, killAfterMs, descriptorLimit)
