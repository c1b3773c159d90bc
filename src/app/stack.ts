/**
 * A replica over backends its builder provides — the lease, the config, registration, who it is, PVE and
 * the store — with no endpoint bound: the piece of `ShardStack` the test worlds and the chaos world build,
 * each with its own doubles (a memory store, the simulator, a lease that only says who leads, a
 * per-term wrapper that injects faults).
 */
import { Layer } from "effect"
import { type LeaderLoopSettings, LeaderLoopLive } from "./LeaderLoop.js"
import { ReplicaLive } from "./Replica.js"

export const ReplicaCore = (leaderLoop: LeaderLoopSettings = {}) => LeaderLoopLive(leaderLoop).pipe(Layer.provideMerge(ReplicaLive))

export { LeaseLive, ReplicaLive } from "./Replica.js"
export { type AroundTerm, type LeaderLoopSettings, LeaderLoopLive } from "./LeaderLoop.js"
export { Registration, registrationOf } from "./Registration.js"
export { ReplicaIdentity, replicaIdentity } from "./ReplicaIdentity.js"
export { ShardConfig, shardConfigOf } from "./ShardConfig.js"
