/**
 * Several shards (and the admin tool) share one bucket; each sees only its own key space. Scoping is a
 * combinator over any store so that every layer gets it identically and no layer re-implements it.
 */
import { Effect, Stream } from "effect"
import { objectPrefixProblem } from "../domain/objectKey.js"
import { InvalidKey, type ObjectStoreShape } from "../services/ObjectStore.js"

const unscoped = (prefix: string, key: string) => (key.startsWith(prefix) ? key.slice(prefix.length) : key)

/**
 * A view of `store` under `prefix`: keys given to it are relative to the prefix, keys it returns from
 * `list`/`head` are relative again. Errors keep the full key: an operator reading one needs the real object name. An invalid prefix fails every call with InvalidKey
 * (never silently writing outside the intended space).
 */
export const scopeStore = (store: ObjectStoreShape, prefix: string): ObjectStoreShape => {
  const problem = objectPrefixProblem(prefix)
  if (problem !== undefined) {
    const invalid = new InvalidKey({ key: prefix, reason: `prefix ${problem}` })
    return {
      get: () => Effect.fail(invalid),
      head: () => Effect.fail(invalid),
      put: () => Effect.fail(invalid),
      delete: () => Effect.fail(invalid),
      list: () => Stream.fail(invalid)
    }
  }
  if (prefix === "") return store
  return {
    get: (key) => store.get(prefix + key),
    head: (key) =>
      store.head(prefix + key).pipe(
        Effect.map((meta) => ({ ...meta, key: unscoped(prefix, meta.key) }))
      ),
    put: (key, body, precondition) => store.put(prefix + key, body, precondition),
    delete: (key) => store.delete(prefix + key),
    list: (sub, startAfter) =>
      store.list(prefix + sub, startAfter === undefined ? undefined : prefix + startAfter).pipe(
        Stream.map((meta) => ({ ...meta, key: unscoped(prefix, meta.key) }))
      )
  }
}
