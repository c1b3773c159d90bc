/**
 * Where the event log keeps its objects in the shard's bucket: segments `log/{seq:016}.json` and snapshots
 * `snapshot/{seq:016}.json`. Zero-padded so that the store's lexical listing order is sequence order.
 */

const pad = (seq: number) => String(seq).padStart(16, "0")
export const segmentKey = (seq: number) => `log/${pad(seq)}.json`
export const snapshotKey = (seq: number) => `snapshot/${pad(seq)}.json`
export const SEGMENT_KEY = /^log\/(\d{16})\.json$/
export const SNAPSHOT_KEY = /^snapshot\/(\d{16})\.json$/

/** The sequence number a key names, or undefined when it is not a name of that kind. */
export const seqOf = (pattern: RegExp, key: string): number | undefined => {
  const match = pattern.exec(key)
  return match?.[1] === undefined ? undefined : Number.parseInt(match[1], 10)
}
