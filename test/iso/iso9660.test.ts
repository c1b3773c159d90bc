import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { buildIso, InvalidIsoInput, IsoReadError, readIsoFiles, SECTOR } from "../../src/domain/iso9660.js"
import { patternBytes } from "./bytes.js"

const enc = new TextEncoder()

const read = (image: Uint8Array) => {
  const result = readIsoFiles(image)
  if (result instanceof IsoReadError) throw result
  return result
}

const cloudInitFiles = [
  { name: "user-data", data: enc.encode("#cloud-config\npackages: [nginx]\n") },
  { name: "meta-data", data: enc.encode("instance-id: web06dx9xy919t3v9kzd2xdsyzb3g\nlocal-hostname: web06dx9xy919t3v9kzd2xdsyzb3g\n") },
  { name: "network-config", data: enc.encode("version: 2\nethernets: {}\n") }
]

describe("ISO 9660 writer and reader", () => {
  it("round-trips the cloud-init files with their exact lowercase names and the volume id", () => {
    const image = buildIso(cloudInitFiles, { volumeId: "cidata" })
    const back = read(image)
    expect(back.volumeId).toBe("cidata")
    expect([...back.files.keys()].sort()).toEqual(["meta-data", "network-config", "user-data"])
    for (const file of cloudInitFiles) expect(back.files.get(file.name)).toEqual(file.data)
  })

  it.each([0, 1, 2047, 2048, 2049, 5 * 1024 * 1024 + 3])("round-trips a %i-byte file byte for byte", (size) => {
    const data = patternBytes(size, size + 7)
    const image = buildIso([{ name: "user-data", data }, { name: "meta-data", data: enc.encode("x") }], { volumeId: "cidata" })
    expect(image.length % SECTOR).toBe(0)
    const back = read(image)
    // Buffer comparison: vitest's deep equality walks a 5 MiB array element by element for many seconds.
    expect(Buffer.from(back.files.get("user-data") ?? []).equals(Buffer.from(data))).toBe(true)
    expect(back.files.get("meta-data")).toEqual(enc.encode("x"))
  })

  it("is deterministic, and createdAt only changes timestamps", () => {
    const a = buildIso(cloudInitFiles, { volumeId: "cidata" })
    const b = buildIso(cloudInitFiles, { volumeId: "cidata" })
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true)
    const later = buildIso(cloudInitFiles, { volumeId: "cidata", createdAt: new Date("2026-03-04T05:06:07Z") })
    expect(Buffer.from(a).equals(Buffer.from(later))).toBe(false)
    expect(later.length).toBe(a.length)
    // The PVD creation date carries the given instant (ECMA-119 8.4.26.1 digits).
    expect(Buffer.from(later.subarray(16 * SECTOR + 813, 16 * SECTOR + 827)).toString("latin1")).toBe("20260304050607")
    expect(read(later).files.get("user-data")).toEqual(cloudInitFiles[0]?.data)
  })

  it("lays out the descriptors the standard requires: PVD, Joliet SVD, terminator, both path tables", () => {
    const image = buildIso(cloudInitFiles, { volumeId: "cidata" })
    const at = (sector: number) => image.subarray(sector * SECTOR, (sector + 1) * SECTOR)
    expect([at(16)[0], at(17)[0], at(18)[0]]).toEqual([1, 2, 255])
    for (const s of [16, 17, 18]) expect(Buffer.from(at(s).subarray(1, 6)).toString("latin1")).toBe("CD001")
    expect(Buffer.from(at(17).subarray(88, 91)).toString("latin1")).toBe("%/E")
    const pvd = Buffer.from(at(16))
    // Both-endian volume size agrees with itself and with the image length.
    expect(pvd.readUInt32LE(80)).toBe(image.length / SECTOR)
    expect(pvd.readUInt32BE(84)).toBe(image.length / SECTOR)
    const rootExtent = pvd.readUInt32LE(156 + 2)
    const lTable = Buffer.from(at(pvd.readUInt32LE(140)))
    const mTable = Buffer.from(at(pvd.readUInt32BE(148)))
    expect(lTable.readUInt32LE(2)).toBe(rootExtent)
    expect(mTable.readUInt32BE(2)).toBe(rootExtent)
    expect(lTable.readUInt16LE(6)).toBe(1)
    expect(mTable.readUInt16BE(6)).toBe(1)
    // The root's "." record starts its system use area with SUSP's SP entry (check bytes BE EF).
    const dot = Buffer.from(image.subarray(rootExtent * SECTOR))
    const su = dot.subarray(34, 41)
    expect(su.toString("latin1", 0, 2)).toBe("SP")
    expect([su[4], su[5]]).toEqual([0xbe, 0xef])
  })

  it("gives long names that clash in 8.3 form distinct primary names and still reads them back exactly", () => {
    const files = ["averylongname-1", "averylongname-2", "averylongname.txt", "averylongname.tx"].map((name, i) => ({
      name,
      data: patternBytes(100 + i, i + 1)
    }))
    const back = read(buildIso(files, { volumeId: "cidata" }))
    for (const file of files) expect(back.files.get(file.name)).toEqual(file.data)
  })

  it.each([
    ["an empty name", ""],
    ["a slash", "a/b"],
    ["a dot", "."],
    ["a semicolon", "user-data;1"],
    ["a 65-character name", "a".repeat(65)]
  ])("refuses %s as a file name", (_label, name) => {
    expect(() => buildIso([{ name, data: new Uint8Array(1) }], { volumeId: "cidata" })).toThrow(InvalidIsoInput)
  })

  it("refuses duplicate names and a bad volume id", () => {
    const file = { name: "a", data: new Uint8Array(0) }
    expect(() => buildIso([file, file], { volumeId: "cidata" })).toThrow(/given twice/)
    expect(() => buildIso([file], { volumeId: "" })).toThrow(InvalidIsoInput)
    expect(() => buildIso([file], { volumeId: "x".repeat(17) })).toThrow(InvalidIsoInput)
  })

  it("spreads a large root directory over several sectors without splitting a record", () => {
    const files = Array.from({ length: 60 }, (_, i) => ({ name: `${String(i).padStart(2, "0")}-${"x".repeat(61)}`, data: patternBytes(i, i + 1) }))
    const image = buildIso(files, { volumeId: "cidata" })
    const rootSize = Buffer.from(image).readUInt32LE(16 * SECTOR + 156 + 10)
    expect(rootSize).toBeGreaterThan(3 * SECTOR)
    expect(rootSize % SECTOR).toBe(0)
    const back = read(image)
    expect(back.files.size).toBe(60)
    for (const file of files) expect(back.files.get(file.name)).toEqual(file.data)
  })

  it("points empty files inside the volume, even when no file has data", () => {
    const image = buildIso([{ name: "a", data: new Uint8Array(0) }, { name: "b", data: new Uint8Array(0) }], { volumeId: "cidata" })
    const volumeSectors = Buffer.from(image).readUInt32LE(16 * SECTOR + 80)
    expect(volumeSectors * SECTOR).toBe(image.length)
    const root = Buffer.from(image).readUInt32LE(16 * SECTOR + 156 + 2)
    // Third record of the primary root (after "." and ".."): its extent must be a sector of the volume.
    const dir = Buffer.from(image.subarray(root * SECTOR))
    const third = (dir[0] ?? 0) + (dir[dir[0] ?? 0] ?? 0)
    expect(dir.readUInt32LE(third + 2)).toBeLessThan(volumeSectors)
    expect(dir.readUInt32LE(third + 10)).toBe(0)
    const back = read(image)
    expect([...back.files.values()].map((d) => d.length)).toEqual([0, 0])
  })

  it("builds and reads an image with no files", () => {
    const back = read(buildIso([], { volumeId: "cidata" }))
    expect(back.files.size).toBe(0)
  })

  const fileName = FastCheck.stringMatching(/^[A-Za-z0-9._+-]{1,64}$/).filter((n) => n !== "." && n !== "..")
  const fileSet = FastCheck.uniqueArray(
    FastCheck.record({ name: fileName, data: FastCheck.uint8Array({ maxLength: 5000 }) }),
    { selector: (f) => f.name, maxLength: 12 }
  )

  it.prop("round-trips any set of files with any contents", [fileSet], ([files]) => {
    const back = read(buildIso(files, { volumeId: "cidata" }))
    expect(back.files.size).toBe(files.length)
    for (const file of files) expect(back.files.get(file.name)).toEqual(file.data)
  })

  it("reads the plain primary names (lowercased, without ;1) when a volume has neither Rock Ridge nor Joliet", () => {
    // Hand-strip the extensions from our own image: blank the Joliet SVD's escape and the root's SP entry.
    const image = buildIso(cloudInitFiles, { volumeId: "cidata" })
    image.fill(0, 17 * SECTOR + 88, 17 * SECTOR + 91)
    const root = Buffer.from(image).readUInt32LE(16 * SECTOR + 156 + 2)
    image[root * SECTOR + 34] = 0x58 // "XP" is no SP: Rock Ridge is off
    const back = read(image)
    expect([...back.files.keys()].sort()).toEqual(["meta_dat", "network_", "user_dat"])
    expect(back.files.get("user_dat")).toEqual(cloudInitFiles[0]?.data)
  })

  it("falls back to Joliet names when Rock Ridge is absent", () => {
    const image = buildIso(cloudInitFiles, { volumeId: "cidata" })
    const root = Buffer.from(image).readUInt32LE(16 * SECTOR + 156 + 2)
    image[root * SECTOR + 34] = 0x58
    const back = read(image)
    expect([...back.files.keys()].sort()).toEqual(["meta-data", "network-config", "user-data"])
  })
})

describe("ISO 9660 reader on bad input", () => {
  const valid = buildIso(cloudInitFiles, { volumeId: "cidata" })

  it.each([
    ["an empty buffer", new Uint8Array(0)],
    ["only the system area", new Uint8Array(16 * SECTOR)],
    ["half a descriptor", valid.subarray(0, 16 * SECTOR + 100)],
    ["the image without its file data", valid.subarray(0, valid.length - SECTOR)],
    ["zeros where descriptors belong", new Uint8Array(40 * SECTOR)]
  ])("returns IsoReadError for %s", (_label, image) => {
    const result = readIsoFiles(image)
    expect(result).toBeInstanceOf(IsoReadError)
    expect((result as IsoReadError).message).toMatch(/^cannot read ISO 9660 image: /)
  })

  it("stops at a SUSP continuation chain that points at itself instead of looping", () => {
    const image = buildIso(cloudInitFiles, { volumeId: "cidata" })
    const ceAt = (sector: number) => {
      const ce = Buffer.alloc(28)
      ce.write("CE", 0, "latin1")
      ce[2] = 28
      ce[3] = 1
      ce.writeUInt32LE(sector, 4)
      ce.writeUInt32BE(sector, 8)
      ce.writeUInt32LE(28, 20)
      ce.writeUInt32BE(28, 24)
      return ce
    }
    // user-data's record: 33-byte header, "USER_DAT.;1" (odd length, no pad), then RR (5 bytes) and PX (36).
    // Its PX becomes a CE into sector 23 plus an 8-byte SUSP padding entry; sector 23 gets a CE to itself.
    const id = Buffer.from(image).indexOf("USER_DAT.;1", 0, "latin1")
    const px = id + 11 + 5
    expect(Buffer.from(image.subarray(px, px + 2)).toString("latin1")).toBe("PX")
    image.set(ceAt(23), px)
    image.set(Uint8Array.of(0x50, 0x44, 8, 1, 0, 0, 0, 0), px + 28)
    image.set(ceAt(23), 23 * SECTOR)
    const result = readIsoFiles(image)
    expect(result).toBeInstanceOf(IsoReadError)
    expect((result as IsoReadError).reason).toMatch(/continuation/)
  })

  it.prop(
    "never throws on a truncated image",
    [FastCheck.integer({ min: 0, max: valid.length - 1 })],
    ([length]) => {
      const result = readIsoFiles(valid.subarray(0, length))
      expect(result instanceof IsoReadError || result.files instanceof Map).toBe(true)
    }
  )

  it.prop(
    "never throws on a corrupted image",
    [FastCheck.array(FastCheck.tuple(FastCheck.integer({ min: 16 * SECTOR, max: 30 * SECTOR - 1 }), FastCheck.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 40 })],
    ([edits]) => {
      const image = Uint8Array.from(valid)
      for (const [at, value] of edits) image[at] = value
      const result = readIsoFiles(image)
      expect(result instanceof IsoReadError || result.files instanceof Map).toBe(true)
    }
  )

  it.prop("never throws on random bytes", [FastCheck.uint8Array({ minLength: 8, maxLength: 20 * SECTOR })], ([bytes]) => {
    const image = new Uint8Array(16 * SECTOR + bytes.length)
    image.set(bytes, 16 * SECTOR)
    image.set(enc.encode("CD001"), 16 * SECTOR + 1)
    const result = readIsoFiles(image)
    expect(result instanceof IsoReadError || result.files instanceof Map).toBe(true)
  })
})
