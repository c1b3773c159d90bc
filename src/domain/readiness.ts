/**
 * Whether a replica is ready, from what it knows of its lease and its leader term. A replica is ready when
 * it leads with its term started (log replayed, cluster read, services published), or when it is a standby
 * whose lease loop still reaches the store and so would notice a free lease. Everything else is a state an
 * orchestrator should not route to and an operator should look at; each says why in one line.
 *
 * A stored config object that is invalid does not change readiness (the last good config stays in force,
 * and a replica that runs on it is as useful as before), but the reason names it, so it is seen where an
 * operator looks first; so do the findings of the leader's preflight against PVE.
 */

import { oneLineText } from "./errorText.js"
import { type Finding, formatFinding, summarizeFindings } from "./pve/preflight.js"

export type ReplicaRole = "leader" | "starting" | "standby" | "fenced" | "unreachable" | "log-corrupt"

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
  /** Config objects not in force as stored (`config.jsonc`, `groups.jsonc`) and why, one line each. */
  readonly configHeld?: ReadonlyArray<{ readonly object: string; readonly problem: string }>
  /** The corrupt event-log object this replica's last term ended on (until a term of it starts again). */
  readonly logProblem?: { readonly term: number; readonly key: string; readonly reason: string } | undefined
  /** Why this leader's new log creates, adopts and deletes nothing (another log's VMs met), while it holds. */
  readonly ownershipHold?: string | undefined
  /** The findings of this leader's last preflight against PVE (none: no run yet, or not leading). */
  readonly preflight?: ReadonlyArray<Finding> | undefined
}

export interface Readiness {
  readonly ready: boolean
  readonly role: ReplicaRole
  /** One line for the `/readyz` body and logs. */
  readonly reason: string
}

const seconds = (millis: number) => `${Math.round(millis / 1000)} s`

export const readinessOf = (input: ReadinessInput): Readiness => {
  const readiness = leaseReadiness(input)
  const notes: Array<string> = []
  // A leader holding its work for the operator is doing what it must; the reason says so, readiness stays.
  if (input.ownershipHold !== undefined) notes.push(`holding: ${oneLineText(input.ownershipHold, 600)}`)
  const held = input.configHeld ?? []
  if (held.length > 0) {
    const objects = held.map((h) => h.object).join(" and ")
    const why = held.map((h) => oneLineText(h.problem, 400)).join("; ")
    notes.push(`${objects} invalid, the last good config stays in force: ${why}`)
  }
  // Like a held config, what the preflight found does not change readiness (a standby could do no better);
  // the reason carries it, errors first, where an operator looks first.
  const findings = input.preflight ?? []
  if (findings.length > 0) notes.push(oneLineText(`preflight: ${summarizeFindings(findings)}: ${findings.map(formatFinding).join("; ")}`, 1200))
  return notes.length === 0 ? readiness : { ...readiness, reason: [readiness.reason, ...notes].join("; ") }
}

const leaseReadiness = (input: ReadinessInput): Readiness => {
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
  // The log cannot be replayed or written past `key`: no term of any replica can start until it is repaired,
  // unless a newer leader is seen (someone repaired it, or it was this replica's problem only).
  const problem = input.logProblem
  if (problem !== undefined && (leader === undefined || leader.term <= problem.term)) {
    return {
      ready: false,
      role: "log-corrupt",
      reason: `event log corrupt at ${problem.key}: ${oneLineText(problem.reason, 400)} (term ${problem.term} ended on it; see "Repairing the event log" in the README)`
    }
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
