import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import {
  decodeBase32,
  encodeBase32,
  InvalidInstanceId,
  makeInstanceIdGenerator,
  parseInstanceId,
  parseStorageKey,
  storageKeyOf,
  uuidOf
} from "../../src/domain/instanceId.js"

const parsed = (input: string, kind?: string) => {
  const result = parseInstanceId(input, kind)
  if (result instanceof InvalidInstanceId) throw result
  return result
}

describe("instance IDs", () => {
  it("decodes the guide's example to a UUIDv7 made in January 2026", () => {
    const id = parsed("tst06dx9xy919t3v9kzd2xdsyzb3g")
    expect(id.kind).toBe("tst")
    expect(uuidOf(id)).toBe("019bd4f7-c90a-743d-a67f-68badcfbeb1c")
    expect(new Date(id.createdAtMillis).toISOString()).toBe("2026-01-19T06:36:07.306Z")
    expect(storageKeyOf(id)).toBe("019bd4f7-c90a-743d-a67f-68badcfbeb1c-tst")
  })

  it("encodes bits in RFC 4648 order, not as a big integer", () => {
    // 0x00…01: the set bit is bit 0 of the last byte, which lands in the 26th character's third bit.
    const bytes = new Uint8Array(16)
    bytes[15] = 1
    expect(encodeBase32(bytes)).toBe("0000000000000000000000000" + "4")
    bytes.fill(0xff)
    expect(encodeBase32(bytes)).toBe("zzzzzzzzzzzzzzzzzzzzzzzzzw")
  })

  it.each([
    ["", "must be 29 characters"],
    ["tst06dx9xy919t3v9kzd2xdsyzb3", "must be 29 characters"],
    ["t5t06dx9xy919t3v9kzd2xdsyzb3g", "must start with a 3-letter lowercase kind"],
    ["tst06dx9xy919t3v9kzd2xdsyzb3u", "body must be 26 base32 characters"],
    ["tst06dx9xy919t3v9kzd2xdsyzb3h", "not a canonical encoding"],
    ["tst00000000000000000000000000", "not a UUIDv7"]
  ])("rejects %j: %s", (input, reason) => {
    const result = parseInstanceId(input)
    expect(result).toBeInstanceOf(InvalidInstanceId)
    expect((result as InvalidInstanceId).message).toContain(reason)
  })

  it("checks the kind when one is expected", () => {
    const result = parseInstanceId("tst06dx9xy919t3v9kzd2xdsyzb3g", "web")
    expect((result as InvalidInstanceId).message).toContain("kind is tst, expected web")
  })

  it("accepts the lenient spellings operators type", () => {
    expect(parsed("TST06DX9XY919T3V9KZD2XDSYZB3G").id).toBe("tst06dx9xy919t3v9kzd2xdsyzb3g")
    expect(parsed(" tst-06dx9xy9-19t3v9kzd2xdsyzb3g ").id).toBe("tst06dx9xy919t3v9kzd2xdsyzb3g")
    expect(parsed("tst06dx9xy9I9t3v9kzd2xdsyzb3g").id).toBe("tst06dx9xy919t3v9kzd2xdsyzb3g")
  })

  it("refuses an invalid kind when minting", () => {
    expect(() => makeInstanceIdGenerator()("Web")).toThrow(InvalidInstanceId)
  })

  it.prop("round-trips any 16 bytes through base32", [FastCheck.uint8Array({ minLength: 16, maxLength: 16 })], ([bytes]) => {
    const text = encodeBase32(bytes)
    expect(text).toMatch(/^[0-9a-hj-km-np-tv-z]{26}$/)
    expect(decodeBase32(text)).toEqual(bytes)
  })

  it.prop(
    "minted IDs parse back, keep their kind and time, and round-trip through the storage key",
    [FastCheck.stringMatching(/^[a-z]{3}$/), FastCheck.integer({ min: 0, max: 2 ** 47 })],
    ([kind, millis]) => {
      const id = parsed(makeInstanceIdGenerator()(kind, millis), kind)
      expect(id.createdAtMillis).toBe(millis)
      const back = parseStorageKey(storageKeyOf(id))
      expect(back).not.toBeInstanceOf(InvalidInstanceId)
      expect((back as typeof id).id).toBe(id.id)
    }
  )

  it.prop(
    "IDs sort by creation time",
    [FastCheck.integer({ min: 0, max: 2 ** 46 }), FastCheck.integer({ min: 1, max: 2 ** 40 })],
    ([earlier, gap]) => {
      const mint = makeInstanceIdGenerator()
      const a = mint("web", earlier)
      const b = mint("web", earlier + gap)
      expect(a < b).toBe(true)
    }
  )

  it("IDs minted in one millisecond, or after the clock stepped back, still sort in minting order", () => {
    const mint = makeInstanceIdGenerator()
    const ids = [
      ...Array.from({ length: 500 }, () => mint("web", 1_800_000_000_000)),
      ...Array.from({ length: 10 }, (_, i) => mint("web", 1_799_999_999_000 + i))
    ]
    expect([...ids].sort()).toEqual(ids)
    expect(new Set(ids).size).toBe(ids.length)
  })
})
