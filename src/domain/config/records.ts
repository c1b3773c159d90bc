/**
 * Maps keyed by names an operator writes (tenants, groups, templates, subnet pools, vars): a name such as
 * `constructor` or `toString` is an ordinary name there, never a property every JavaScript object inherits.
 * (`__proto__` cannot be written at all: the JSONC reader refuses it, since parsers turn it into a prototype.)
 */

/** `record[key]` when the map itself holds `key`; never an inherited member. */
export const own = <V>(record: Readonly<Record<string, V>> | undefined, key: string): V | undefined =>
  record !== undefined && Object.hasOwn(record, key) ? record[key] : undefined

/** An empty map without a prototype, so a lookup that forgets `own` still cannot find an inherited member. */
export const emptyRecord = <V>(): Record<string, V> => Object.create(null) as Record<string, V>

/** A copy of `record` without a prototype. */
export const recordOf = <V>(record: Readonly<Record<string, V>>): Record<string, V> => Object.assign(emptyRecord<V>(), record)
