/**
 * The durable substrate of a shard: leader lease, event log, config and dynamic groups all live in one
 * bucket (S3, GCS, a directory, or memory). Conditional writes are the only coordination primitive, so
 * every layer must honour `IfMatch` / `IfAbsent` exactly and resolve ambiguous outcomes itself.
 */
import { Context, Data, Effect, Stream } from "effect"

export class NotFound extends Data.TaggedError("NotFound")<{ readonly key: string }> {
  override get message() {
    return `object not found: ${this.key}`
  }
}

/** The object changed (IfMatch) or already exists (IfAbsent): someone else won the write. */
export class PreconditionFailed extends Data.TaggedError("PreconditionFailed")<{
  readonly key: string
  readonly precondition: Precondition
}> {
  override get message() {
    return this.precondition._tag === "IfAbsent"
      ? `object already exists: ${this.key}`
      : `object changed since etag ${this.precondition.etag}: ${this.key}`
  }
}

/** The store could not be reached or answered with a transient failure; safe to retry. */
export class StoreUnavailable extends Data.TaggedError("StoreUnavailable")<{
  readonly operation: string
  readonly key: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `object store unavailable (${this.operation} ${this.key}): ${this.reason}`
  }
}

/** Credentials are missing or wrong, or the bucket does not exist: retrying will not help. */
export class AccessDenied extends Data.TaggedError("AccessDenied")<{
  readonly operation: string
  readonly key: string
  readonly reason: string
}> {
  override get message() {
    return `object store refused ${this.operation} ${this.key}: ${this.reason}`
  }
}

export class InvalidKey extends Data.TaggedError("InvalidKey")<{ readonly key: string; readonly reason: string }> {
  override get message() {
    return `invalid object key ${JSON.stringify(this.key)}: ${this.reason}`
  }
}

/** Failures every operation may have. */
export type StoreError = StoreUnavailable | AccessDenied | InvalidKey

export type Precondition =
  | { readonly _tag: "IfMatch"; readonly etag: string }
  | { readonly _tag: "IfAbsent" }

export const ifMatch = (etag: string): Precondition => ({ _tag: "IfMatch", etag })
export const ifAbsent: Precondition = { _tag: "IfAbsent" }

export interface StoredObject {
  readonly body: Uint8Array
  /** Opaque version token: S3 ETag without quotes, GCS generation, or a content hash. */
  readonly etag: string
}

export interface ObjectMeta {
  readonly key: string
  readonly size: number
  readonly etag: string
}

export interface ObjectStoreShape {
  readonly get: (key: string) => Effect.Effect<StoredObject, NotFound | StoreError>
  readonly head: (key: string) => Effect.Effect<ObjectMeta, NotFound | StoreError>
  /**
   * Writes `body`. With a precondition the write happens only if it holds. A write whose outcome is
   * unknown (timeout, 500/409 from a server that may have applied it) is resolved by the layer by
   * re-reading the key and comparing bodies — never reported as success or failure by guesswork.
   */
  readonly put: (
    key: string,
    body: Uint8Array,
    precondition?: Precondition
  ) => Effect.Effect<{ readonly etag: string }, PreconditionFailed | StoreError>
  /** Deleting a missing key succeeds. */
  readonly delete: (key: string) => Effect.Effect<void, StoreError>
  /** Keys under `prefix` in ascending order, strictly after `startAfter` when given; pages are fetched lazily. */
  readonly list: (prefix: string, startAfter?: string) => Stream.Stream<ObjectMeta, StoreError>
}

export class ObjectStore extends Context.Tag("nstance/ObjectStore")<ObjectStore, ObjectStoreShape>() {}
