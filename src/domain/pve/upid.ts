/**
 * PVE task identifiers (`UPID:node:pid:pstart:starttime:type:id:user:`). The node in a UPID is where the
 * task runs, which is where its status must be read (a clone with `target` still runs on the source node).
 */
import { Option } from "effect"

export interface ParsedUpid {
  readonly node: string
  readonly pid: number
  readonly pstart: number
  readonly starttime: number
  readonly type: string
  readonly id: string
  readonly user: string
}

const UPID = /^UPID:([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$/

export const UPID_PATTERN = UPID

const hex8 = (n: number) => (n >>> 0).toString(16).toUpperCase().padStart(8, "0")

/** PVE's own spelling: pid, pstart and starttime as 8 upper-case hex digits (what the simulator issues). */
export const formatUpid = (u: ParsedUpid): string =>
  `UPID:${u.node}:${hex8(u.pid)}:${hex8(u.pstart)}:${hex8(u.starttime)}:${u.type}:${u.id}:${u.user}:`

export const parseUpid = (text: string): Option.Option<ParsedUpid> => {
  const m = UPID.exec(text)
  if (m === null) return Option.none()
  return Option.some({
    node: m[1] ?? "",
    pid: parseInt(m[2] ?? "0", 16),
    pstart: parseInt(m[3] ?? "0", 16),
    starttime: parseInt(m[4] ?? "0", 16),
    type: m[5] ?? "",
    id: m[6] ?? "",
    user: m[7] ?? ""
  })
}
