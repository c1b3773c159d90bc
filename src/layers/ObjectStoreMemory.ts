/**
 * An in-process object store with the same conditional-write semantics as the real ones: the store of
 * tests and of the embedded default. Etags are content hashes plus a version counter, so rewriting the
 * same bytes still changes the etag (as S3 does for a new PUT of identical content, GCS generation too).
 */
import { createHash } from "node:crypto"
import { Effect, Layer, Stream } from "effect"
import { objectKeyProblem, objectPrefixProblem } from "../domain/objectKey.js"
import {
  InvalidKey,
  NotFound,
  ObjectStore,
  type ObjectMeta,
  type ObjectStoreShape,
  type Precondition,
  PreconditionFailed
} from "../services/ObjectStore.js"

interface Entry {
  readonly body: Uint8Array
  readonly etag: string
}

const checkKey = (key: string) => {
  const problem = objectKeyProblem(key)
  return problem === undefined ? Effect.void : Effect.fail(new InvalidKey({ key, reason: problem }))
}

export const makeMemoryStore = (): ObjectStoreShape => {
  const objects = new Map<string, Entry>()
  let version = 0
  const etagOf = (body: Uint8Array) =>
    `${createHash("md5").update(body).digest("hex")}-${(++version).toString(36)}`

  const holds = (current: Entry | undefined, pre: Precondition | undefined) => {
    if (pre === undefined) return true
    if (pre._tag === "IfAbsent") return current === undefined
    return current !== undefined && current.etag === pre.etag
  }

  return ObjectStore.of({
    get: (key) =>
      checkKey(key).pipe(
        Effect.zipRight(Effect.suspend(() => {
          const entry = objects.get(key)
          return entry === undefined
            ? Effect.fail(new NotFound({ key }))
            : Effect.succeed({ body: entry.body.slice(), etag: entry.etag })
        }))
      ),
    head: (key) =>
      checkKey(key).pipe(
        Effect.zipRight(Effect.suspend(() => {
          const entry = objects.get(key)
          return entry === undefined
            ? Effect.fail(new NotFound({ key }))
            : Effect.succeed<ObjectMeta>({ key, size: entry.body.byteLength, etag: entry.etag })
        }))
      ),
    put: (key, body, precondition) =>
      checkKey(key).pipe(
        Effect.zipRight(Effect.suspend(() => {
          if (!holds(objects.get(key), precondition)) {
            return Effect.fail(new PreconditionFailed({ key, precondition: precondition! }))
          }
          const entry = { body: body.slice(), etag: etagOf(body) }
          objects.set(key, entry)
          return Effect.succeed({ etag: entry.etag })
        }))
      ),
    delete: (key) =>
      checkKey(key).pipe(Effect.zipRight(Effect.sync(() => void objects.delete(key)))),
    list: (prefix, startAfter) => {
      const problem = objectPrefixProblem(prefix)
      if (problem !== undefined) return Stream.fail(new InvalidKey({ key: prefix, reason: problem }))
      return Stream.suspend(() =>
        Stream.fromIterable(
          [...objects.entries()]
            .filter(([key]) => key.startsWith(prefix) && (startAfter === undefined || key > startAfter))
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([key, entry]): ObjectMeta => ({ key, size: entry.body.byteLength, etag: entry.etag }))
        )
      )
    }
  })
}

export const ObjectStoreMemory = Layer.sync(ObjectStore, makeMemoryStore)
