/**
 * PVE's conventions for sizes, property strings and config files (`format_size`, drive strings such as
 * `local-lvm:vm-100-disk-0,size=2G`, tag lists, the config digest): pure functions of the text PVE writes.
 */
import { createHash } from "node:crypto"

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

/** PVE's `format_size`: the largest unit that represents the size exactly. */
export const formatSize = (bytes: number): string => {
  const kb = Math.floor(bytes / 1024)
  if (kb * 1024 !== bytes) return String(bytes)
  const mb = Math.floor(kb / 1024)
  if (mb * 1024 !== kb) return `${kb}K`
  const gb = Math.floor(mb / 1024)
  if (gb * 1024 !== mb) return `${mb}M`
  const tb = Math.floor(gb / 1024)
  if (tb * 1024 !== gb) return `${gb}G`
  return `${tb}T`
}

const UNIT: Readonly<Record<string, number>> = { K: KiB, M: MiB, G: GiB, T: 1024 * GiB }

export const parseSize = (text: string): number | undefined => {
  const m = /^(\d+(?:\.\d+)?)([KMGT])?$/.exec(text)
  if (m === null) return undefined
  return Math.floor(Number(m[1]) * (m[2] === undefined ? 1 : UNIT[m[2]] ?? 1))
}

/** Splits `file,k=v,…` (drive strings) into the leading volume and the options. */
export const parseDrive = (value: string): { readonly file: string; readonly opts: Map<string, string> } => {
  const parts = value.split(",")
  const opts = new Map<string, string>()
  let file = ""
  parts.forEach((part, i) => {
    const eq = part.indexOf("=")
    if (i === 0 && eq < 0) file = part
    else if (eq >= 0 && part.slice(0, eq) === "file") file = part.slice(eq + 1)
    else if (eq >= 0) opts.set(part.slice(0, eq), part.slice(eq + 1))
  })
  return { file, opts }
}

export const formatDrive = (file: string, opts: ReadonlyMap<string, string>): string =>
  [file, ...[...opts].map(([k, v]) => `${k}=${v}`)].join(",")

export const DRIVE_KEY = /^(?:ide[0-3]|sata[0-5]|scsi\d+|virtio\d+|efidisk0|tpmstate0|unused\d+)$/

export const isCdrom = (value: string) => parseDrive(value).opts.get("media") === "cdrom"

export const volumeStorage = (volid: string): string | undefined => {
  const colon = volid.indexOf(":")
  return colon > 0 ? volid.slice(0, colon) : undefined
}

export const memoryMiB = (config: ReadonlyMap<string, string>): number => {
  const raw = config.get("memory") ?? "512"
  const m = /^(?:current=)?(\d+)/.exec(raw)
  return m === null ? 512 : Number(m[1])
}

export const coresOf = (config: ReadonlyMap<string, string>): number =>
  Number(config.get("cores") ?? "1") * Number(config.get("sockets") ?? "1")

/** Tag lists are stored `;`-joined, de-duplicated, empty entries dropped (PVE ≥ 7.3). */
export const normaliseTags = (value: string): string => {
  const seen: Array<string> = []
  for (const tag of value.split(/[;, ]/)) if (tag !== "" && !seen.includes(tag)) seen.push(tag)
  return seen.join(";")
}

export const configDigest = (config: ReadonlyMap<string, string>): string =>
  createHash("sha1").update([...config].map(([k, v]) => `${k}: ${v}\n`).join("")).digest("hex")

/** PVE writes config keys sorted; `lock` stays where PVE keeps it (sorted too). */
export const sortConfig = (config: ReadonlyMap<string, string>): Map<string, string> =>
  new Map([...config].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
