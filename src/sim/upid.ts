/**
 * Task identifiers in PVE's own format, `UPID:node:pid:pstart:starttime:type:id:user:` (pid, pstart and
 * starttime as 8 upper-case hex digits), so a client that parses the node out of a UPID works unchanged.
 */

export interface Upid {
  readonly node: string
  readonly pid: number
  readonly pstart: number
  readonly starttime: number
  readonly type: string
  readonly id: string
  readonly user: string
}

const hex8 = (n: number) => (n >>> 0).toString(16).toUpperCase().padStart(8, "0")

export const formatUpid = (u: Upid): string =>
  `UPID:${u.node}:${hex8(u.pid)}:${hex8(u.pstart)}:${hex8(u.starttime)}:${u.type}:${u.id}:${u.user}:`

const UPID_PATTERN = /^UPID:([a-zA-Z0-9][a-zA-Z0-9-]*):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$/

export const parseUpid = (text: string): Upid | undefined => {
  const m = UPID_PATTERN.exec(text)
  if (m === null) return undefined
  return {
    node: m[1] ?? "",
    pid: parseInt(m[2] ?? "0", 16),
    pstart: parseInt(m[3] ?? "0", 16),
    starttime: parseInt(m[4] ?? "0", 16),
    type: m[5] ?? "",
    id: m[6] ?? "",
    user: m[7] ?? ""
  }
}
