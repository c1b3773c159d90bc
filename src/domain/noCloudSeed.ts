/**
 * A cloud-init NoCloud seed read back from ISO bytes, the way cloud-init's NoCloud datasource reads it: the
 * filesystem must be labelled `cidata` and hold `meta-data` (with an `instance-id`) and `user-data`. Used by
 * the simulator's guests and by `nstance-agent` reading its own seed.
 */
import { IsoReadError, readIsoFiles } from "./iso9660.js"

const decoder = new TextDecoder("utf-8", { fatal: false })

const unquote = (value: string): string => {
  const v = value.trim()
  if (v.startsWith("\"") && v.endsWith("\"") && v.length >= 2) {
    try {
      const parsed: unknown = JSON.parse(v)
      if (typeof parsed === "string") return parsed
    } catch { /* fall through: keep the text as written */ }
  }
  if (v.startsWith("'") && v.endsWith("'") && v.length >= 2) return v.slice(1, -1).replace(/''/g, "'")
  return v
}

/** Only the flat `key: value` lines NoCloud meta-data uses; nested YAML is ignored, not misread. */
export const parseMetaData = (text: string): Readonly<Record<string, string>> => {
  const out: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    const m = /^([A-Za-z0-9_-]+):[ \t]*(.*)$/.exec(line)
    if (m === null || m[1] === undefined) continue
    out[m[1]] = unquote(m[2] ?? "")
  }
  return out
}

export type SeedReadResult =
  | { readonly _tag: "Seed"; readonly volumeId: string; readonly metaData: Readonly<Record<string, string>>; readonly instanceId: string; readonly userData: string; readonly networkConfig?: string }
  | { readonly _tag: "Unreadable"; readonly reason: string }

/** Reads a NoCloud seed from ISO bytes; anything cloud-init would not accept is `Unreadable` with the reason. */
export const readSeed = (image: Uint8Array): SeedReadResult => {
  const iso = readIsoFiles(image)
  if (iso instanceof IsoReadError) return { _tag: "Unreadable", reason: `ISO unreadable: ${iso.reason}` }
  // cloud-init's NoCloud only considers a filesystem labelled cidata (case-insensitive).
  if (iso.volumeId.trim().toLowerCase() !== "cidata") {
    return { _tag: "Unreadable", reason: `ISO volume id is ${JSON.stringify(iso.volumeId)}, not cidata` }
  }
  const meta = iso.files.get("meta-data")
  if (meta === undefined) return { _tag: "Unreadable", reason: "ISO has no meta-data file" }
  const user = iso.files.get("user-data")
  if (user === undefined) return { _tag: "Unreadable", reason: "ISO has no user-data file" }
  const metaData = parseMetaData(decoder.decode(meta))
  const instanceId = metaData["instance-id"]
  if (instanceId === undefined || instanceId === "") return { _tag: "Unreadable", reason: "meta-data has no instance-id" }
  const network = iso.files.get("network-config")
  const base = { _tag: "Seed" as const, volumeId: iso.volumeId, metaData, instanceId, userData: decoder.decode(user) }
  return network === undefined ? base : { ...base, networkConfig: decoder.decode(network) }
}
