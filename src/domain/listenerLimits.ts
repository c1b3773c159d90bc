/**
 * How much of the process's file descriptors the inbound listeners may hold, and how long a connection may
 * take over each part of a request. Every port a tenant VM can reach is hostile: a few thousand idle or slow
 * connections from one VM must not starve the descriptors the leader needs for Proxmox VE, the bucket and
 * its lease (running out of them is how a leader loses its lease). So the inbound caps are sized from the
 * descriptor limit, with a fixed share kept back for the leader's own outbound calls.
 */

/** The endpoints a replica listens on. */
export type ListenerName = "registration" | "agent" | "operator" | "health"

export const LISTENERS: ReadonlyArray<ListenerName> = ["registration", "agent", "operator", "health"]

export interface ListenerLimits {
  /** Open connections the listener holds at once; one more is closed as soon as it is accepted. */
  readonly maxConnections: number
  /** Open connections one peer address may hold on this listener. */
  readonly maxConnectionsPerPeer: number
  /** From the connection's first byte to the end of the request headers. */
  readonly headersTimeoutMs: number
  /** From the connection's first byte to the end of the request body. */
  readonly requestTimeoutMs: number
  /** An idle keep-alive connection is closed after this. */
  readonly keepAliveTimeoutMs: number
  /** A connection with no traffic at all (sent nothing, or stopped reading) is closed after this. */
  readonly idleTimeoutMs: number
  /** Bytes of request headers. */
  readonly maxHeaderBytes: number
}

/**
 * Descriptors kept back for everything that is not an inbound connection: Node itself (stdio, the event
 * loop, its worker threads), the Proxmox client's pooled sockets (a few per node), the bucket client and
 * the snapshot cache. A quarter of the limit, at least 128.
 */
export const reservedDescriptors = (descriptorLimit: number): number => Math.max(128, Math.floor(descriptorLimit / 4))

/**
 * What each listener gets of the inbound share. The agent channel holds one connection per registered VM
 * for as long as it runs, registration one per booting VM for a moment; operators and probes are few.
 */
const SHARE: Readonly<Record<ListenerName, number>> = { registration: 0.3, agent: 0.4, operator: 0.15, health: 0.15 }

/** The smallest caps that still serve: below them the descriptor limit is too low for any real use. */
const FLOOR_CONNECTIONS = 16
const FLOOR_PER_PEER = 4

/**
 * The limits of `listener` in a process allowed `descriptorLimit` open files (the soft `RLIMIT_NOFILE`).
 * At the common default of 1,024: the agent channel 307 connections (38 per peer), registration 230 (28 per
 * peer), operator and health 115 each (14 per peer), leaving 256 descriptors to the leader's own work. A
 * shard of thousands of VMs needs a higher limit (the systemd unit sets 65,536: 19,660 agent channels).
 */
export const listenerLimits = (listener: ListenerName, descriptorLimit: number): ListenerLimits => {
  const inbound = Math.max(0, descriptorLimit - reservedDescriptors(descriptorLimit))
  const maxConnections = Math.max(FLOOR_CONNECTIONS, Math.floor(inbound * SHARE[listener]))
  return {
    maxConnections,
    maxConnectionsPerPeer: Math.max(FLOOR_PER_PEER, Math.floor(maxConnections / 8)),
    headersTimeoutMs: 5_000,
    requestTimeoutMs: 10_000,
    keepAliveTimeoutMs: 5_000,
    idleTimeoutMs: 15_000,
    maxHeaderBytes: 16 * 1024
  }
}

/** The soft open-files limit from the text of `/proc/self/limits`; undefined when the line is missing or unlimited. */
export const parseDescriptorLimit = (limits: string): number | undefined => {
  const line = limits.split("\n").find((l) => l.startsWith("Max open files"))
  const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0]
  if (soft === undefined || !/^\d+$/.test(soft)) return undefined
  return Number(soft)
}

/** Why a connection or request was turned away; a fixed set, so the metric's series stay few. */
export type RefusalReason =
  | "listener-full"
  | "peer-full"
  | "timeout"
  | "tls"
  | "bad-request"
  | "token"
  | "nonce"
  | "certificate"
  | "payload"
  | "too-large"
