/**
 * A minimal Reflect metadata API for tsyringe (loaded by @peculiar/x509): define/get/getOwn and the
 * `metadata` decorator factory, stored per target and property in a WeakMap. Installed only when the
 * global has none, so a full `reflect-metadata` loaded by someone else wins. See `x509.ts`.
 */
type Key = string | symbol | undefined
const store = new WeakMap<object, Map<Key, Map<unknown, unknown>>>()

const own = (target: object, property: Key, create: boolean): Map<unknown, unknown> | undefined => {
  let byProperty = store.get(target)
  if (byProperty === undefined) {
    if (!create) return undefined
    byProperty = new Map()
    store.set(target, byProperty)
  }
  let entries = byProperty.get(property)
  if (entries === undefined && create) {
    entries = new Map()
    byProperty.set(property, entries)
  }
  return entries
}

const api = {
  defineMetadata(key: unknown, value: unknown, target: object, property?: Key): void {
    own(target, property, true)!.set(key, value)
  },
  getOwnMetadata(key: unknown, target: object, property?: Key): unknown {
    return own(target, property, false)?.get(key)
  },
  getMetadata(key: unknown, target: object, property?: Key): unknown {
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t)) {
      const entries = own(t, property, false)
      if (entries?.has(key)) return entries.get(key)
    }
    return undefined
  },
  metadata(key: unknown, value: unknown) {
    return (target: object, property?: Key) => api.defineMetadata(key, value, target, property)
  }
}

const reflect = Reflect as unknown as Record<string, unknown>
for (const [name, fn] of Object.entries(api)) {
  if (typeof reflect[name] !== "function") reflect[name] = fn
}

export {}
