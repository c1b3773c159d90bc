/**
 * Association tags mark a VM as nstance's: `nstance`, the cluster id and the shard id. GC and adoption
 * filter on them, so they must survive PVE's tag rules (PVE rejects tags outside `[a-z0-9_][a-z0-9_+.-]*`,
 * compares them case-insensitively, and accepts `;`, `,` or spaces as separators on input while
 * returning `;`).
 */

export const OWNERSHIP_TAG = "nstance"

const TAG_PATTERN = /^[a-z0-9_][a-z0-9_+.-]*$/

export const isValidPveTag = (tag: string): boolean => TAG_PATTERN.test(tag)

/**
 * Maps any identifier onto a valid PVE tag: lower-cased, characters PVE refuses become `-`, a leading
 * character PVE refuses gets a `_` in front. Identifiers that already follow nstance's identifier rules
 * (lowercase alphanumerics and hyphens) come out unchanged.
 */
export const toPveTag = (value: string): string => {
  const lowered = value.trim().toLowerCase().replace(/[^a-z0-9_+.-]/g, "-")
  if (lowered === "") return "_"
  return TAG_PATTERN.test(lowered) ? lowered : `_${lowered}`
}

/** The tags every VM of (cluster, shard) carries, in the order the original writes them. */
export const associationTags = (clusterId: string, shard: string): ReadonlyArray<string> =>
  dedupe([OWNERSHIP_TAG, toPveTag(clusterId), toPveTag(shard)])

const dedupe = (tags: ReadonlyArray<string>): Array<string> => {
  const seen = new Set<string>()
  return tags.filter((tag) => {
    const key = tag.toLowerCase()
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

/** Splits PVE's tag string (`a;b`, also `a,b` or `a b` as PVE accepts), dropping empty entries. */
export const parsePveTags = (tags: string | undefined): ReadonlyArray<string> =>
  tags === undefined ? [] : dedupe(tags.split(/[;,\s]+/).map((tag) => tag.trim()).filter((tag) => tag !== ""))

/**
 * Adds `wanted` to the tags a VM already has, keeping the existing ones and their order. Never yields an
 * empty element (the original produced `;nstance` from an empty tag string).
 */
export const mergePveTags = (existing: string | undefined, wanted: ReadonlyArray<string>): string =>
  dedupe([...parsePveTags(existing), ...wanted]).join(";")

/**
 * A pure function of (cluster, shard, a VM's tag string), computed once per distinct string: the thousands of
 * VMs of a cluster share a handful of tag strings, and the term's first look, every GC pass and the preflight
 * ask about each VM (at 9,000 VMs parsing and normalising every string cost a few hundred ms per look).
 * Bounded: forgotten wholesale past MEMO_LIMIT strings.
 */
const MEMO_LIMIT = 4096
const perTagString = <A>(compute: (tags: string | undefined, clusterId: string, shard: string) => A) => {
  const known = new Map<string, { readonly value: A }>()
  return (tags: string | undefined, clusterId: string, shard: string): A => {
    // Control characters cannot occur in the three parts PVE and the config give us, so "\n" separates them.
    const key = `${clusterId}\n${shard}\n${tags ?? ""}`
    const hit = known.get(key)
    if (hit !== undefined) return hit.value
    if (known.size >= MEMO_LIMIT) known.clear()
    const value = compute(tags, clusterId, shard)
    known.set(key, { value })
    return value
  }
}

/** True when the VM's tags mark it as belonging to (cluster, shard). */
export const hasAssociationTags: (tags: string | undefined, clusterId: string, shard: string) => boolean = perTagString((tags, clusterId, shard) => {
  const present = new Set(parsePveTags(tags).map((tag) => tag.toLowerCase()))
  return associationTags(clusterId, shard).every((tag) => present.has(tag))
})

/**
 * The shard tag of a VM that carries `nstance` and the cluster's tag but not `shard`'s: a VM another shard
 * made in this cluster (one cluster is meant to be one shard). The tag after the cluster's is the shard's
 * (the order our tags are written in); else the first tag that is not ours. Undefined for any other VM.
 */
export const otherShardTag: (tags: string | undefined, clusterId: string, shard: string) => string | undefined = perTagString((tags, clusterId, shard) => {
  const list = parsePveTags(tags).map((tag) => tag.toLowerCase())
  const cluster = toPveTag(clusterId)
  if (!list.includes(OWNERSHIP_TAG) || !list.includes(cluster) || list.includes(toPveTag(shard))) return undefined
  const next = list[list.indexOf(cluster) + 1]
  const others = list.filter((tag) => tag !== OWNERSHIP_TAG && tag !== cluster)
  return next !== undefined && next !== OWNERSHIP_TAG ? next : others[0]
})
