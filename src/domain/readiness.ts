/**
 * Whether a replica is ready, from what it knows of its lease and its leader term. A replica is ready when
 * it leads with its term started (log replayed, cluster read, services published), or when it is a standby
 * whose lease loop still reaches the store and so would notice a free lease. Everything else is a state an
 * orchestrator should not route to and an operator should look at; each says why in one line.
 */

export type ReplicaRole = "leader" | "starting" | "standby" | "fenced" | "unreachable"

export interface ReadinessInput {
  readonly replica: string
  /** The lease says this replica leads (and has not fenced itself). */
  readonly isLeader: boolean
  /** The lease's term: ours while leading, else the last leader's seen (0 when none). */
  readonly leaseTerm: number
  /** The term whose services are published on the replica handle, if any. */
  readonly publishedTerm: number | undefined
  /** Who leads as far as the lease knows. */
  readonly leader: { readonly id: string; readonly term: number } | undefined
  /** Milliseconds since the lease record was last read; undefined before the first read. */
  readonly sinceContactMillis: number | undefined
  /** Silence of the store longer than this means the lease loop cannot do its job. */
  readonly staleAfterMillis: number
}

export interface Readiness {
  readonly ready: boolean
  readonly role: ReplicaRole
  /** One line for the `/readyz` body and logs. */
  readonly reason: string
}

const seconds = (millis: number) => `${Math.round(millis / 1000)} s`

export const readinessOf = (input: ReadinessInput): Readiness => {
  const { isLeader, leaseTerm, publishedTerm, leader } = input
  if (isLeader) {
    if (publishedTerm === leaseTerm) return { ready: true, role: "leader", reason: `leader of term ${leaseTerm}` }
    return {
      ready: false,
      role: "starting",
      reason: publishedTerm === undefined
        ? `leader of term ${leaseTerm}, still starting (replaying the log, reading the cluster)`
        : `leader of term ${leaseTerm}, still starting (the work of term ${publishedTerm} is stopping)`
    }
  }
  // A term still published without the lease: the leader fenced itself or lost the lease, and its work is
  // being interrupted. Nothing it does from here on becomes durable, so it must not look ready.
  if (publishedTerm !== undefined) {
    return { ready: false, role: "fenced", reason: `fenced: lost the lease of term ${publishedTerm}; its work is stopping` }
  }
  if (input.sinceContactMillis === undefined) {
    return { ready: false, role: "unreachable", reason: "lease: the lease record has not been read yet" }
  }
  if (input.sinceContactMillis > input.staleAfterMillis) {
    return { ready: false, role: "unreachable", reason: `lease: the store has not answered for ${seconds(input.sinceContactMillis)}; cannot follow or take over` }
  }
  if (leader !== undefined && leader.id === input.replica) {
    return { ready: false, role: "fenced", reason: `fenced: the lease record names this replica (term ${leader.term}) but it no longer leads` }
  }
  return leader === undefined
    ? { ready: true, role: "standby", reason: "standby; the lease is free" }
    : { ready: true, role: "standby", reason: `standby; ${leader.id} leads (term ${leader.term})` }
}
