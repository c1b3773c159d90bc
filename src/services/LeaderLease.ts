/**
 * Leadership of a shard: exactly one replica at a time runs the shard actor's leader scope. The contract
 * hides how the lease is held (a conditional-write record in the shard's bucket) so the actor and the admin
 * endpoints only see "am I leader, with which term, and who is".
 */
import { Context, Data, type Effect, type Option, type Scope, type SubscriptionRef } from "effect"

/** The options of a lease make no sense together (e.g. a timeout shorter than the renewal interval). */
export class InvalidLeaseOptions extends Data.TaggedError("InvalidLeaseOptions")<{
  readonly field: string
  readonly reason: string
}> {
  override get message() {
    return `invalid leader election setting ${this.field}: ${this.reason}`
  }
}

/**
 * Another live process holds the shard's lease under this replica's `--id` (its incarnation differs and it
 * renews the record): two processes with one id would take the lease from each other for ever, so the one
 * that notices refuses to run.
 */
export class DuplicateReplica extends Data.TaggedError("DuplicateReplica")<{
  readonly id: string
  readonly key: string
  readonly term: number
  readonly address: string
}> {
  override get message() {
    return `another process is running with --id ${this.id}: it holds ${this.key} (term ${this.term}${this.address === "" ? "" : `, advertising ${this.address}`}) and renews it; ` +
      `this one stops — give every replica of a shard its own --id`
  }
}

export interface LeaderInfo {
  readonly id: string
  /** host:port other replicas and clients are redirected to; may be empty (the Go server omits it). */
  readonly address: string
  readonly term: number
}

export interface LeaderLeaseShape {
  /** This replica's id (`--id`). */
  readonly id: string
  /** True exactly while this replica holds the lease and has not fenced itself. */
  readonly isLeader: SubscriptionRef.SubscriptionRef<boolean>
  /** Our term while leader; otherwise the term of the leader last observed (0 when none was seen). */
  readonly term: Effect.Effect<number>
  /** Who leads now as far as this replica knows (itself included); none when the lease is free or expired. */
  readonly currentLeader: Effect.Effect<Option.Option<LeaderInfo>>
  /**
   * When (Clock epoch millis) the lease record was last read successfully; none before the first read.
   * Optional only so that test doubles may leave it out (readiness then does not judge the store's reach).
   */
  readonly lastContact?: Effect.Effect<Option.Option<number>>
  /**
   * Runs `work(term)` each time this replica acquires the lease and interrupts it when leadership is lost,
   * for as long as the calling scope lives. Renewal never waits for `work`. If `work` fails, the failure is
   * logged and the lease is resigned so a standby takes over.
   */
  readonly whileLeader: <E, R>(work: (term: number) => Effect.Effect<unknown, E, R>) => Effect.Effect<void, never, R | Scope.Scope>
  /**
   * Steps down now and releases the record (Go zero time, If-Match) so a standby acquires at its next tick;
   * this replica then does not try to acquire for one leader timeout. Never fails; problems are logged.
   */
  readonly resign: Effect.Effect<void>
  /**
   * Fails once this replica sees another live process renew the lease under its own id; never succeeds.
   * The replica must then stop. Optional only so that test doubles may leave it out.
   */
  readonly duplicate?: Effect.Effect<never, DuplicateReplica>
}

export class LeaderLease extends Context.Tag("nstance/LeaderLease")<LeaderLease, LeaderLeaseShape>() {}
