/**
 * Provider args merge defaults → template → group: objects merge key by key (recursively), anything
 * else — arrays included — replaces, and `null` removes a key (so a template can drop a default's
 * `TemplateName` in favour of its own `TemplateVMID`). The original merges by reference and later
 * merges write into the shared defaults (behaviour §12 item 12); here the result shares nothing with
 * its inputs, so merging for one group can never change another group's args.
 */
import type { JsonObject } from "./schema.js"

const isPlainObject = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** A deep copy of a JSON value (the config comes from JSON, so there are no cycles, dates or functions). */
export const cloneJson = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(cloneJson)
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {}
    for (const [key, child] of Object.entries(value)) out[key] = cloneJson(child)
    return out
  }
  return value
}

const mergeInto = (target: Record<string, unknown>, layer: Readonly<Record<string, unknown>>): void => {
  for (const [key, value] of Object.entries(layer)) {
    if (value === null) {
      delete target[key]
    } else if (isPlainObject(value)) {
      const existing = target[key]
      const base: Record<string, unknown> = isPlainObject(existing) ? (existing as Record<string, unknown>) : {}
      // `base` is always a copy made by this merge, never an input object.
      mergeInto(base, value)
      target[key] = base
    } else {
      target[key] = cloneJson(value)
    }
  }
}

/** Merges layers from least to most specific into a fresh object. */
export const mergeArgs = (...layers: ReadonlyArray<JsonObject | undefined>): JsonObject => {
  const out: Record<string, unknown> = {}
  for (const layer of layers) if (layer !== undefined) mergeInto(out, layer)
  return out
}

/** String maps (vars) merge shallowly, most specific last. */
export const mergeVars = (
  ...layers: ReadonlyArray<Readonly<Record<string, string>> | undefined>
): Readonly<Record<string, string>> => Object.assign({}, ...layers.filter((layer) => layer !== undefined))
