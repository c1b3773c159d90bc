/**
 * A small ISO 9660 writer and reader for cloud-init NoCloud seed images, so no external binary (genisoimage,
 * xorriso) is needed at run time and the PVE simulator can read back exactly what a guest would see.
 *
 * Scope: one flat root directory holding a handful of files. The primary tree uses ISO level-1 (8.3
 * uppercase) names; the real names live in Rock Ridge `NM` entries (SUSP/RRIP 1991A, announced by `SP` in the
 * root's `.` record and `ER` in a continuation area) and in a Joliet tree (UCS-2), so Linux, isoinfo, xorriso
 * and cloud-init all read `user-data` byte for byte. Output is deterministic for the same input.
 */
import { Data } from "effect"

export class IsoReadError extends Data.TaggedError("IsoReadError")<{ readonly reason: string }> {
  override get message() {
    return `cannot read ISO 9660 image: ${this.reason}`
  }
}

/** Thrown by `buildIso` for input no caller should produce (bad file names, duplicates, bad volume id). */
export class InvalidIsoInput extends Data.TaggedError("InvalidIsoInput")<{ readonly reason: string }> {
  override get message() {
    return `invalid ISO 9660 input: ${this.reason}`
  }
}

export const SECTOR = 2048

/** Default timestamp: a fixed instant, so two builds of the same files are byte-identical. */
export const DEFAULT_ISO_TIME = new Date(Date.UTC(2000, 0, 1, 0, 0, 0))

// Names are limited to a portable set: it fits Joliet (64 UCS-2 units, no `*/:;?\`), a single NM entry, and
// every filesystem a guest may copy the file to.
const NAME_PATTERN = /^[A-Za-z0-9._+-]{1,64}$/
const VOLUME_ID_PATTERN = /^[A-Za-z0-9_.-]{1,16}$/

// Fixed sector layout of the descriptors and tables; directories and file data follow.
const PVD_SECTOR = 16
const JOLIET_SVD_SECTOR = 17
const TERMINATOR_SECTOR = 18
const PRIMARY_L_TABLE = 19
const PRIMARY_M_TABLE = 20
const JOLIET_L_TABLE = 21
const JOLIET_M_TABLE = 22
const CONTINUATION_SECTOR = 23
const FIRST_DIRECTORY_SECTOR = 24
const PATH_TABLE_SIZE = 10

const ER_ID = "RRIP_1991A"
const ER_DESCRIPTOR = "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
const ER_SOURCE = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION."

const FILE_MODE = 0o100444
const DIRECTORY_MODE = 0o040555

// ---------------------------------------------------------------------------------------------------------
// Encoding helpers

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff)

const ucs2 = (text: string): Uint8Array => {
  const out = new Uint8Array(text.length * 2)
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    out[2 * i] = unit >> 8
    out[2 * i + 1] = unit & 0xff
  }
  return out
}

const put16LE = (b: Uint8Array, at: number, v: number) => {
  b[at] = v & 0xff
  b[at + 1] = (v >>> 8) & 0xff
}
const put16BE = (b: Uint8Array, at: number, v: number) => {
  b[at] = (v >>> 8) & 0xff
  b[at + 1] = v & 0xff
}
const put32LE = (b: Uint8Array, at: number, v: number) => {
  b[at] = v & 0xff
  b[at + 1] = (v >>> 8) & 0xff
  b[at + 2] = (v >>> 16) & 0xff
  b[at + 3] = (v >>> 24) & 0xff
}
const put32BE = (b: Uint8Array, at: number, v: number) => {
  b[at] = (v >>> 24) & 0xff
  b[at + 1] = (v >>> 16) & 0xff
  b[at + 2] = (v >>> 8) & 0xff
  b[at + 3] = v & 0xff
}
/** ECMA-119 7.2.3: both-byte-order 16-bit field (little-endian copy first). */
const putBoth16 = (b: Uint8Array, at: number, v: number) => {
  put16LE(b, at, v)
  put16BE(b, at + 2, v)
}
/** ECMA-119 7.3.3: both-byte-order 32-bit field. */
const putBoth32 = (b: Uint8Array, at: number, v: number) => {
  put32LE(b, at, v)
  put32BE(b, at + 4, v)
}

const putPadded = (b: Uint8Array, at: number, length: number, bytes: Uint8Array, pad: number) => {
  b.fill(pad, at, at + length)
  b.set(bytes.subarray(0, length), at)
}

/** Joliet text fields are padded with UCS-2 spaces (0x00 0x20). */
const putUcs2Padded = (b: Uint8Array, at: number, length: number, text: string) => {
  for (let i = 0; i + 1 < length; i += 2) {
    b[at + i] = 0x00
    b[at + i + 1] = 0x20
  }
  b.set(ucs2(text).subarray(0, length - (length % 2)), at)
}

const pad2 = (n: number) => String(n).padStart(2, "0")

/** ECMA-119 8.4.26.1: 16 ASCII digits plus a GMT offset byte (UTC here). */
const decDateTime = (date: Date): Uint8Array => {
  const text =
    String(date.getUTCFullYear()).padStart(4, "0") + pad2(date.getUTCMonth() + 1) + pad2(date.getUTCDate()) +
    pad2(date.getUTCHours()) + pad2(date.getUTCMinutes()) + pad2(date.getUTCSeconds()) +
    pad2(Math.floor(date.getUTCMilliseconds() / 10))
  const out = new Uint8Array(17)
  out.set(ascii(text))
  return out
}

const UNSET_DEC_DATE_TIME = (() => {
  const out = new Uint8Array(17)
  out.set(ascii("0000000000000000"))
  return out
})()

/** ECMA-119 9.1.5: seven bytes, years since 1900 (also the RRIP `TF` short form). */
const recordDate = (date: Date): Uint8Array =>
  Uint8Array.of(
    date.getUTCFullYear() - 1900, date.getUTCMonth() + 1, date.getUTCDate(),
    date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds(), 0
  )

// ---------------------------------------------------------------------------------------------------------
// SUSP / RRIP entries

const suspEntry = (signature: string, body: Uint8Array): Uint8Array => {
  const out = new Uint8Array(4 + body.length)
  out.set(ascii(signature))
  out[2] = out.length
  out[3] = 1
  out.set(body, 4)
  return out
}

const spEntry = () => suspEntry("SP", Uint8Array.of(0xbe, 0xef, 0))

// RRIP 1991A "RR" flags: which RRIP entries this record carries (PX=1, NM=8, TF=128).
const rrEntry = (flags: number) => suspEntry("RR", Uint8Array.of(flags))

const pxEntry = (mode: number, links: number) => {
  const body = new Uint8Array(32)
  putBoth32(body, 0, mode)
  putBoth32(body, 8, links)
  // uid and gid stay 0 (root), as cloud-init expects nothing else of a seed image.
  return suspEntry("PX", body)
}

// TF with only the modification time (flag bit 1), short 7-byte form.
const tfEntry = (date: Date) => suspEntry("TF", Uint8Array.of(0x02, ...recordDate(date)))

const nmEntry = (name: string) => suspEntry("NM", Uint8Array.of(0, ...new TextEncoder().encode(name)))

const ceEntry = (sector: number, offset: number, length: number) => {
  const body = new Uint8Array(24)
  putBoth32(body, 0, sector)
  putBoth32(body, 8, offset)
  putBoth32(body, 16, length)
  return suspEntry("CE", body)
}

const erEntry = () => {
  const id = ascii(ER_ID)
  const descriptor = ascii(ER_DESCRIPTOR)
  const source = ascii(ER_SOURCE)
  const body = new Uint8Array(4 + id.length + descriptor.length + source.length)
  body[0] = id.length
  body[1] = descriptor.length
  body[2] = source.length
  body[3] = 1
  body.set(id, 4)
  body.set(descriptor, 4 + id.length)
  body.set(source, 4 + id.length + descriptor.length)
  return suspEntry("ER", body)
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

// ---------------------------------------------------------------------------------------------------------
// Directory records

interface RecordSpec {
  readonly identifier: Uint8Array
  readonly extent: number
  readonly size: number
  readonly directory: boolean
  readonly systemUse: Uint8Array
}

/** ECMA-119 9.1: a directory record, padded so its length (and the system use area's start) is even. */
const directoryRecord = (spec: RecordSpec, date: Date): Uint8Array => {
  const idLength = spec.identifier.length
  const base = 33 + idLength + (idLength % 2 === 0 ? 1 : 0)
  const total = base + spec.systemUse.length + ((base + spec.systemUse.length) % 2)
  if (total > 255) throw new InvalidIsoInput({ reason: "directory record longer than 255 bytes" })
  const out = new Uint8Array(total)
  out[0] = total
  putBoth32(out, 2, spec.extent)
  putBoth32(out, 10, spec.size)
  out.set(recordDate(date), 18)
  out[25] = spec.directory ? 0x02 : 0x00
  putBoth16(out, 28, 1)
  out[32] = idLength
  out.set(spec.identifier, 33)
  out.set(spec.systemUse, base)
  return out
}

/** Records never straddle a sector (ECMA-119 6.8.1.1): a record that does not fit starts the next one. */
const packRecords = (records: ReadonlyArray<Uint8Array>): Uint8Array => {
  const chunks: Array<Uint8Array> = []
  let sector = new Uint8Array(SECTOR)
  let used = 0
  for (const record of records) {
    if (used + record.length > SECTOR) {
      chunks.push(sector)
      sector = new Uint8Array(SECTOR)
      used = 0
    }
    sector.set(record, used)
    used += record.length
  }
  chunks.push(sector)
  return concat(chunks)
}

// ---------------------------------------------------------------------------------------------------------
// Names

const D_CHARACTER = /[A-Z0-9_]/

const toDCharacters = (text: string): string =>
  Array.from(text.toUpperCase(), (c) => (D_CHARACTER.test(c) ? c : "_")).join("")

/** Level-1 `NAME.EXT;1` names, unique within the directory (a numeric suffix resolves clashes). */
const level1Names = (names: ReadonlyArray<string>): Array<string> => {
  const used = new Set<string>()
  return names.map((name) => {
    const dot = name.lastIndexOf(".")
    const stem = toDCharacters(dot > 0 ? name.slice(0, dot) : name).replace(/\./g, "_") || "_"
    const extension = toDCharacters(dot > 0 ? name.slice(dot + 1) : "").slice(0, 3)
    let candidate = `${stem.slice(0, 8)}.${extension};1`
    for (let n = 1; used.has(candidate); n++) {
      const suffix = String(n)
      candidate = `${stem.slice(0, 8 - suffix.length)}${suffix}.${extension};1`
    }
    used.add(candidate)
    return candidate
  })
}

/** ECMA-119 9.3: order by name then extension, the shorter one padded with spaces. */
const compareLevel1 = (a: string, b: string): number => {
  const split = (s: string) => {
    const [nameExt = ""] = s.split(";")
    const dot = nameExt.indexOf(".")
    return dot < 0 ? [nameExt, ""] as const : [nameExt.slice(0, dot), nameExt.slice(dot + 1)] as const
  }
  const comparePadded = (x: string, y: string) => {
    const length = Math.max(x.length, y.length)
    const px = x.padEnd(length, " ")
    const py = y.padEnd(length, " ")
    return px < py ? -1 : px > py ? 1 : 0
  }
  const [an, ae] = split(a)
  const [bn, be] = split(b)
  return comparePadded(an, bn) || comparePadded(ae, be)
}

// ---------------------------------------------------------------------------------------------------------
// Builder

export interface IsoFile {
  readonly name: string
  readonly data: Uint8Array
}

const validate = (files: ReadonlyArray<IsoFile>, volumeId: string) => {
  if (!VOLUME_ID_PATTERN.test(volumeId)) {
    throw new InvalidIsoInput({ reason: `volume id ${JSON.stringify(volumeId)} must be 1-16 of [A-Za-z0-9_.-]` })
  }
  const seen = new Set<string>()
  for (const file of files) {
    if (!NAME_PATTERN.test(file.name) || file.name === "." || file.name === "..") {
      throw new InvalidIsoInput({ reason: `file name ${JSON.stringify(file.name)} must be 1-64 of [A-Za-z0-9._+-]` })
    }
    if (seen.has(file.name)) throw new InvalidIsoInput({ reason: `file name ${JSON.stringify(file.name)} given twice` })
    seen.add(file.name)
    if (file.data.length > 0xffffffff) {
      throw new InvalidIsoInput({ reason: `file ${file.name} is larger than one extent (4 GiB)` })
    }
  }
}

/**
 * Builds the image. Throws `InvalidIsoInput` only for names or volume ids outside the documented set —
 * callers pass fixed names (`user-data`, `meta-data`, `network-config`), so that is a programming error.
 */
export const buildIso = (
  files: ReadonlyArray<{ readonly name: string; readonly data: Uint8Array }>,
  options: { readonly volumeId: string; readonly createdAt?: Date }
): Uint8Array => {
  validate(files, options.volumeId)
  const date = options.createdAt ?? DEFAULT_ISO_TIME
  const isoNames = level1Names(files.map((f) => f.name))
  const entries = files.map((file, index) => ({ ...file, isoName: isoNames[index] ?? "" }))

  // Record lengths do not depend on extents, so a first pass with zero extents sizes the directories.
  const primaryRecords = (rootExtent: number, rootSize: number, extents: ReadonlyMap<string, number>) => {
    const dot = directoryRecord({
      identifier: Uint8Array.of(0), extent: rootExtent, size: rootSize, directory: true,
      systemUse: concat([spEntry(), rrEntry(0x81), pxEntry(DIRECTORY_MODE, 2), tfEntry(date),
        ceEntry(CONTINUATION_SECTOR, 0, erEntry().length)])
    }, date)
    const dotDot = directoryRecord({
      identifier: Uint8Array.of(1), extent: rootExtent, size: rootSize, directory: true,
      systemUse: concat([rrEntry(0x81), pxEntry(DIRECTORY_MODE, 2), tfEntry(date)])
    }, date)
    const sorted = [...entries].sort((a, b) => compareLevel1(a.isoName, b.isoName))
    return [dot, dotDot, ...sorted.map((file) => directoryRecord({
      identifier: ascii(file.isoName), extent: extents.get(file.name) ?? 0, size: file.data.length,
      directory: false,
      systemUse: concat([rrEntry(0x89), pxEntry(FILE_MODE, 1), tfEntry(date), nmEntry(file.name)])
    }, date))]
  }
  const jolietRecords = (rootExtent: number, rootSize: number, extents: ReadonlyMap<string, number>) => {
    const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    const self = (id: number) =>
      directoryRecord({ identifier: Uint8Array.of(id), extent: rootExtent, size: rootSize, directory: true, systemUse: new Uint8Array(0) }, date)
    return [self(0), self(1), ...sorted.map((file) => directoryRecord({
      identifier: ucs2(file.name), extent: extents.get(file.name) ?? 0, size: file.data.length, directory: false,
      systemUse: new Uint8Array(0)
    }, date))]
  }

  const none = new Map<string, number>()
  const primarySize = packRecords(primaryRecords(0, 0, none)).length
  const jolietSize = packRecords(jolietRecords(0, 0, none)).length
  const primaryRoot = FIRST_DIRECTORY_SECTOR
  const jolietRoot = primaryRoot + primarySize / SECTOR
  const dataStart = jolietRoot + jolietSize / SECTOR
  let next = dataStart
  const extents = new Map<string, number>()
  for (const file of entries) {
    // Empty files own no sector; like genisoimage they point at the start of the data area, and the
    // volume keeps at least one sector there so the pointer never lies outside it.
    extents.set(file.name, file.data.length === 0 ? dataStart : next)
    next += Math.ceil(file.data.length / SECTOR)
  }
  const totalSectors = next === dataStart && entries.length > 0 ? next + 1 : next
  const image = new Uint8Array(totalSectors * SECTOR)
  const primaryDirectory = packRecords(primaryRecords(primaryRoot, primarySize, extents))
  const jolietDirectory = packRecords(jolietRecords(jolietRoot, jolietSize, extents))
  image.set(primaryDirectory, primaryRoot * SECTOR)
  image.set(jolietDirectory, jolietRoot * SECTOR)
  image.set(erEntry(), CONTINUATION_SECTOR * SECTOR)
  for (const file of entries) {
    if (file.data.length > 0) image.set(file.data, (extents.get(file.name) ?? 0) * SECTOR)
  }

  const rootRecord = (extent: number, size: number) =>
    directoryRecord({ identifier: Uint8Array.of(0), extent, size, directory: true, systemUse: new Uint8Array(0) }, date)

  const writeDescriptor = (sector: number, joliet: boolean) => {
    const d = image.subarray(sector * SECTOR, (sector + 1) * SECTOR)
    d[0] = joliet ? 2 : 1
    d.set(ascii("CD001"), 1)
    d[6] = 1
    const text = (at: number, length: number, value: string) =>
      joliet ? putUcs2Padded(d, at, length, value) : putPadded(d, at, length, ascii(value), 0x20)
    text(8, 32, "LINUX")
    text(40, 32, options.volumeId)
    putBoth32(d, 80, totalSectors)
    // Joliet level 3 (UCS-2) escape sequence.
    if (joliet) d.set(ascii("%/E"), 88)
    putBoth16(d, 120, 1)
    putBoth16(d, 124, 1)
    putBoth16(d, 128, SECTOR)
    putBoth32(d, 132, PATH_TABLE_SIZE)
    put32LE(d, 140, joliet ? JOLIET_L_TABLE : PRIMARY_L_TABLE)
    put32BE(d, 148, joliet ? JOLIET_M_TABLE : PRIMARY_M_TABLE)
    d.set(joliet ? rootRecord(jolietRoot, jolietSize) : rootRecord(primaryRoot, primarySize), 156)
    text(190, 128, "")
    text(318, 128, "")
    text(446, 128, "")
    text(574, 128, "NSTANCE")
    text(702, 37, "")
    text(739, 37, "")
    text(776, 37, "")
    const stamp = decDateTime(date)
    d.set(stamp, 813)
    d.set(stamp, 830)
    d.set(UNSET_DEC_DATE_TIME, 847)
    d.set(stamp, 864)
    d[881] = 1
  }
  writeDescriptor(PVD_SECTOR, false)
  writeDescriptor(JOLIET_SVD_SECTOR, true)

  const terminator = image.subarray(TERMINATOR_SECTOR * SECTOR)
  terminator[0] = 255
  terminator.set(ascii("CD001"), 1)
  terminator[6] = 1

  // ECMA-119 9.4: the path table of a flat volume is the root's entry alone; L is little-, M big-endian.
  const pathTable = (sector: number, rootExtent: number, bigEndian: boolean) => {
    const t = image.subarray(sector * SECTOR)
    t[0] = 1
    if (bigEndian) {
      put32BE(t, 2, rootExtent)
      put16BE(t, 6, 1)
    } else {
      put32LE(t, 2, rootExtent)
      put16LE(t, 6, 1)
    }
  }
  pathTable(PRIMARY_L_TABLE, primaryRoot, false)
  pathTable(PRIMARY_M_TABLE, primaryRoot, true)
  pathTable(JOLIET_L_TABLE, jolietRoot, false)
  pathTable(JOLIET_M_TABLE, jolietRoot, true)
  return image
}

// ---------------------------------------------------------------------------------------------------------
// Reader

const MAX_DESCRIPTORS = 64
const MAX_CONTINUATIONS = 32

const fail = (reason: string) => new IsoReadError({ reason })

const le32 = (b: Uint8Array, at: number): number =>
  ((b[at] ?? 0) | ((b[at + 1] ?? 0) << 8) | ((b[at + 2] ?? 0) << 16)) + (b[at + 3] ?? 0) * 0x1000000

const latin1 = (bytes: Uint8Array): string => String.fromCharCode(...bytes)

const utf8 = new TextDecoder("utf-8")

const ucs2Decode = (bytes: Uint8Array): string => {
  let out = ""
  for (let i = 0; i + 1 < bytes.length; i += 2) out += String.fromCharCode(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0))
  return out
}

interface RawRecord {
  readonly identifier: Uint8Array
  readonly extent: number
  readonly size: number
  readonly flags: number
  readonly systemUse: Uint8Array
}

const slice = (image: Uint8Array, offset: number, length: number, what: string): Uint8Array | IsoReadError =>
  offset < 0 || length < 0 || offset + length > image.length
    ? fail(`${what} (bytes ${offset}..${offset + length}) lies beyond the end of the ${image.length}-byte image`)
    : image.subarray(offset, offset + length)

const parseRecord = (bytes: Uint8Array, at: number, what: string): RawRecord | IsoReadError => {
  const length = bytes[at] ?? 0
  if (length < 34 || at + length > bytes.length) return fail(`${what}: bad directory record length ${length}`)
  const idLength = bytes[at + 32] ?? 0
  const base = 33 + idLength + (idLength % 2 === 0 ? 1 : 0)
  if (33 + idLength > length) return fail(`${what}: identifier longer than its record`)
  return {
    identifier: bytes.subarray(at + 33, at + 33 + idLength),
    extent: le32(bytes, at + 2),
    size: le32(bytes, at + 10),
    flags: bytes[at + 25] ?? 0,
    systemUse: bytes.subarray(at + Math.min(base, length), at + length)
  }
}

const readDirectory = (image: Uint8Array, root: RawRecord, what: string): Array<RawRecord> | IsoReadError => {
  const area = slice(image, root.extent * SECTOR, root.size, `${what} root directory`)
  if (area instanceof IsoReadError) return area
  const records: Array<RawRecord> = []
  let at = 0
  while (at < area.length) {
    const length = area[at] ?? 0
    if (length === 0) {
      // Zero padding to the end of the sector: the next record starts at the next sector.
      at = (Math.floor(at / SECTOR) + 1) * SECTOR
      continue
    }
    if (Math.floor(at / SECTOR) !== Math.floor((at + length - 1) / SECTOR)) {
      return fail(`${what} root directory: record at byte ${at} crosses a sector boundary`)
    }
    const record = parseRecord(area, at, `${what} root directory`)
    if (record instanceof IsoReadError) return record
    records.push(record)
    at += length
  }
  return records
}

/** Walks SUSP entries, following `CE` continuations a bounded number of times. */
const suspEntries = (
  image: Uint8Array,
  systemUse: Uint8Array,
  skip: number
): Array<{ signature: string; body: Uint8Array }> | IsoReadError => {
  const entries: Array<{ signature: string; body: Uint8Array }> = []
  let area = systemUse.subarray(Math.min(skip, systemUse.length))
  for (let hops = 0; ; hops++) {
    let continuation: { sector: number; offset: number; length: number } | undefined
    let at = 0
    while (at + 4 <= area.length) {
      const signature = latin1(area.subarray(at, at + 2))
      const length = area[at + 2] ?? 0
      if (length < 4 || at + length > area.length) break
      const body = area.subarray(at + 4, at + length)
      if (signature === "ST") break
      if (signature === "CE" && body.length >= 24) {
        continuation = { sector: le32(body, 0), offset: le32(body, 8), length: le32(body, 16) }
      } else {
        entries.push({ signature, body })
      }
      at += length
    }
    if (continuation === undefined) return entries
    if (hops >= MAX_CONTINUATIONS) return fail("too many SUSP continuation areas (a loop?)")
    const next = slice(image, continuation.sector * SECTOR + continuation.offset, continuation.length, "SUSP continuation area")
    if (next instanceof IsoReadError) return next
    area = next
  }
}

const isSelfOrParent = (record: RawRecord) =>
  record.identifier.length === 1 && ((record.identifier[0] ?? 0) <= 1)

const stripVersion = (name: string): string => {
  const semicolon = name.lastIndexOf(";")
  const bare = semicolon >= 0 ? name.slice(0, semicolon) : name
  return bare.endsWith(".") ? bare.slice(0, -1) : bare
}

const collectFiles = (
  image: Uint8Array,
  records: ReadonlyArray<RawRecord>,
  nameOf: (record: RawRecord) => string | IsoReadError
): Map<string, Uint8Array> | IsoReadError => {
  const files = new Map<string, Uint8Array>()
  for (const record of records) {
    if (isSelfOrParent(record) || (record.flags & 0x02) !== 0) continue
    if ((record.flags & 0x80) !== 0) return fail("multi-extent files are not supported")
    const name = nameOf(record)
    if (name instanceof IsoReadError) return name
    if (files.has(name)) continue
    const data = record.size === 0 ? new Uint8Array(0) : slice(image, record.extent * SECTOR, record.size, `file ${JSON.stringify(name)}`)
    if (data instanceof IsoReadError) return data
    files.set(name, Uint8Array.from(data))
  }
  return files
}

/**
 * Reads the volume id and the root directory's files. Names come from Rock Ridge `NM` when the volume has
 * Rock Ridge, else from the Joliet tree, else from the primary names without `;1`, lowercased. Never throws.
 */
export const readIsoFiles = (
  image: Uint8Array
): { readonly volumeId: string; readonly files: ReadonlyMap<string, Uint8Array> } | IsoReadError => {
  try {
    let primary: Uint8Array | undefined
    let joliet: Uint8Array | undefined
    for (let i = 0; i < MAX_DESCRIPTORS; i++) {
      const descriptor = slice(image, (PVD_SECTOR + i) * SECTOR, SECTOR, `volume descriptor ${i}`)
      if (descriptor instanceof IsoReadError) {
        return primary === undefined ? fail(`no primary volume descriptor (${descriptor.reason})`) : descriptor
      }
      if (latin1(descriptor.subarray(1, 6)) !== "CD001") return fail(`volume descriptor ${i} lacks the CD001 signature`)
      const type = descriptor[0]
      if (type === 255) break
      if (type === 1 && primary === undefined) primary = descriptor
      const escape = latin1(descriptor.subarray(88, 91))
      if (type === 2 && joliet === undefined && (escape === "%/@" || escape === "%/C" || escape === "%/E")) joliet = descriptor
    }
    if (primary === undefined) return fail("no primary volume descriptor")
    const volumeId = latin1(primary.subarray(40, 72)).replace(/[ \0]+$/, "")

    const primaryRoot = parseRecord(primary, 156, "primary volume descriptor")
    if (primaryRoot instanceof IsoReadError) return primaryRoot
    const primaryRecords = readDirectory(image, primaryRoot, "primary")
    if (primaryRecords instanceof IsoReadError) return primaryRecords

    // Rock Ridge is in use when the root's "." record starts its system use area with SP (SUSP 5.3).
    const dot = primaryRecords[0]
    const sp = dot && isSelfOrParent(dot) && dot.systemUse.length >= 7 &&
      latin1(dot.systemUse.subarray(0, 2)) === "SP" && dot.systemUse[4] === 0xbe && dot.systemUse[5] === 0xef
    if (sp && dot) {
      const skip = dot.systemUse[6] ?? 0
      const rockNames = (record: RawRecord): string | IsoReadError => {
        const entries = suspEntries(image, record.systemUse, skip)
        if (entries instanceof IsoReadError) return entries
        const parts: Array<Uint8Array> = []
        for (const entry of entries) {
          if (entry.signature !== "NM" || entry.body.length < 1) continue
          const flags = entry.body[0] ?? 0
          if ((flags & 0x06) !== 0) continue
          parts.push(entry.body.subarray(1))
          if ((flags & 0x01) === 0) break
        }
        return parts.length > 0
          ? utf8.decode(concat(parts))
          : stripVersion(latin1(record.identifier)).toLowerCase()
      }
      const files = collectFiles(image, primaryRecords, rockNames)
      return files instanceof IsoReadError ? files : { volumeId, files }
    }

    if (joliet !== undefined) {
      const jolietRoot = parseRecord(joliet, 156, "Joliet volume descriptor")
      if (jolietRoot instanceof IsoReadError) return jolietRoot
      const jolietRecords = readDirectory(image, jolietRoot, "Joliet")
      if (jolietRecords instanceof IsoReadError) return jolietRecords
      const files = collectFiles(image, jolietRecords, (record) => stripVersion(ucs2Decode(record.identifier)))
      return files instanceof IsoReadError ? files : { volumeId, files }
    }

    const files = collectFiles(image, primaryRecords, (record) => stripVersion(latin1(record.identifier)).toLowerCase())
    return files instanceof IsoReadError ? files : { volumeId, files }
  } catch (error) {
    // Defensive: the parser is written not to throw, but a reader of untrusted bytes must never crash its caller.
    return fail(`unexpected parser failure: ${String(error)}`)
  }
}
