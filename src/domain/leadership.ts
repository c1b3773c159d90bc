/**
 * Whether a replica is the one an address that follows the leader (a keepalived VIP) belongs on: it holds
 * the lease and its term has started — readiness role "leader", nothing less. `/leaderz` answers it. Unlike
 * `/readyz`, which a healthy standby passes too, at most one replica of a shard passes it at a time (two
 * only for as long as a deposed leader has not yet noticed it lost its lease, which it does by itself
 * within the leader timeout).
 */
import { Schema } from "effect"
import type { Readiness, ReplicaRole } from "./readiness.js"

/** The roles of a replica that does not lead (readiness says why, in one line). */
const NOT_LEADING_ROLES = ["starting", "standby", "fenced", "unreachable", "log-corrupt"] as const satisfies ReadonlyArray<Exclude<ReplicaRole, "leader">>

/** 200: this replica leads `term` and its term has started. */
export const Leading = Schema.Struct({
  leading: Schema.Literal(true),
  shard: Schema.String,
  replica: Schema.String,
  term: Schema.Int
})

/** 503: this replica does not lead (or not yet, or no more); who does, as far as its lease knows. */
export const NotLeading = Schema.Struct({
  leading: Schema.Literal(false),
  shard: Schema.String,
  replica: Schema.String,
  role: Schema.Literal(...NOT_LEADING_ROLES),
  reason: Schema.String,
  /** null while no leader is known (the lease is free, or this replica cannot read it). */
  leader: Schema.NullOr(Schema.Struct({
    replica: Schema.String,
    term: Schema.Int,
    /** Where that leader serves its health endpoint (and `/leaderz`); "" when its address is not known. */
    health: Schema.String
  }))
})

export const Leadership = Schema.Union(Leading, NotLeading)
export type Leadership = typeof Leadership.Type

export interface LeadershipInput {
  readonly shard: string
  readonly replica: string
  readonly readiness: Readiness
  /** The lease's term: ours while leading. */
  readonly leaseTerm: number
  /** Who leads as far as the lease knows (this replica included). */
  readonly leader: { readonly id: string; readonly term: number } | undefined
  /** Where the leader serves the health endpoint ("" when unknown). */
  readonly leaderHealth: string
}

export const leadershipOf = (input: LeadershipInput): Leadership => {
  const { shard, replica, readiness } = input
  if (readiness.role === "leader") return { leading: true, shard, replica, term: input.leaseTerm }
  return {
    leading: false,
    shard,
    replica,
    role: readiness.role,
    reason: readiness.reason,
    leader: input.leader === undefined ? null : { replica: input.leader.id, term: input.leader.term, health: input.leaderHealth }
  }
}
