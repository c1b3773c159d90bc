/**
 * Instance IDs are the identity of a VM everywhere (VM name in PVE, keys in the bucket, certificate CN):
 * a 3-letter kind followed by the 16 bytes of a UUIDv7 in base32 with Crockford's alphabet (RFC 4648 bit
 * grouping, no padding). The alphabet is in ASCII order and UUIDv7 starts with the Unix-millisecond
 * timestamp, so IDs sort by creation time — compatible with the original server's puidv7 IDs.
 */
import { randomBytes } from "node:crypto"
import { Data } from "effect"
import { v7 as uuidv7 } from "uuid"

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
const BODY_LENGTH = 26
const KIND_PATTERN = /^[a-z]{3}$/
const BODY_PATTERN = /^[0-9a-hj-km-np-tv-z]{26}$/

export class InvalidInstanceId extends Data.TaggedError("InvalidInstanceId")<{
  readonly input: string
  readonly reason: string
}> {
  override get message() {
    return `invalid instance ID ${JSON.stringify(this.input)}: ${this.reason}`
  }
}

export interface ParsedInstanceId {
  /** Canonical form: kind + 26 lowercase base32 characters. */
  readonly id: string
  readonly kind: string
  /** The 16 bytes of the UUIDv7. */
  readonly bytes: Uint8Array
  /** Creation time carried by the UUIDv7 (milliseconds since the Unix epoch). */
  readonly createdAtMillis: number
}

export const isValidKind = (kind: string): boolean => KIND_PATTERN.test(kind)

/** Encodes 16 bytes as 26 characters: 5 bits per character, most significant first, last 2 bits zero. */
export const encodeBase32 = (bytes: Uint8Array): string => {
  let out = ""
  let buffer = 0
  let bits = 0
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += ALPHABET[(buffer >> bits) & 31]
    }
    buffer &= (1 << bits) - 1
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31]
  return out
}

/** Decodes 26 canonical characters into 16 bytes; undefined when a character or the padding bits are wrong. */
export const decodeBase32 = (text: string): Uint8Array | undefined => {
  if (text.length !== BODY_LENGTH) return undefined
  const out = new Uint8Array(16)
  let buffer = 0
  let bits = 0
  let index = 0
  for (const char of text) {
    const value = ALPHABET.indexOf(char)
    if (value < 0) return undefined
    buffer = (buffer << 5) | value
    bits += 5
    if (bits >= 8) {
      bits -= 8
      out[index++] = (buffer >> bits) & 0xff
      buffer &= (1 << bits) - 1
    }
  }
  // 130 bits carry 128: the 2 leftover bits must be zero or the text is not a canonical encoding.
  return bits === 2 && buffer === 0 ? out : undefined
}

const timestampOf = (bytes: Uint8Array): number =>
  bytes.subarray(0, 6).reduce((acc, byte) => acc * 256 + byte, 0)

/**
 * Makes an ID minter with its own monotonic state: within one millisecond (or when the clock steps back)
 * the UUIDv7 counter field is incremented instead of re-randomised, so IDs minted later always compare
 * greater — the order the create saga and the bucket keys rely on.
 */
export const makeInstanceIdGenerator = () => {
  let lastMillis = -Infinity
  let sequence = 0
  return (kind: string, nowMillis: number = Date.now(), random: Uint8Array = randomBytes(16)): string => {
    if (!isValidKind(kind)) {
      throw new InvalidInstanceId({ input: kind, reason: "kind must be exactly 3 lowercase letters" })
    }
    if (random.length < 16) throw new InvalidInstanceId({ input: kind, reason: "16 random bytes are needed" })
    if (nowMillis > lastMillis) {
      lastMillis = nowMillis
      // 31 random bits leave room to count up within the millisecond before wrapping.
      sequence = new DataView(random.buffer, random.byteOffset, random.byteLength).getUint32(6) >>> 1
    } else {
      sequence = (sequence + 1) >>> 0
      if (sequence === 0) lastMillis++
    }
    const bytes = new Uint8Array(16)
    uuidv7({ msecs: lastMillis, seq: sequence, random }, bytes)
    return kind + encodeBase32(bytes)
  }
}

/** Normalises the lenient spellings operators type (case, spaces, hyphens, i/l for 1, o for 0). */
const normalise = (input: string): string =>
  input.toLowerCase().replace(/[\s-]/g, "").replace(/[il]/g, "1").replace(/o/g, "0")

/**
 * Parses an instance ID. The kind is taken as typed (it is letters, so `o`/`i`/`l` there are kept); the
 * body is normalised leniently, must decode canonically and must be a UUIDv7.
 */
export const parseInstanceId = (input: string, expectedKind?: string): ParsedInstanceId | InvalidInstanceId => {
  const trimmed = input.trim().replace(/[\s-]/g, "")
  const fail = (reason: string) => new InvalidInstanceId({ input, reason })
  if (trimmed.length !== 3 + BODY_LENGTH) return fail(`must be 29 characters (3-letter kind + 26), got ${trimmed.length}`)
  const kind = trimmed.slice(0, 3).toLowerCase()
  if (!isValidKind(kind)) return fail("must start with a 3-letter lowercase kind")
  if (expectedKind !== undefined && kind !== expectedKind) return fail(`kind is ${kind}, expected ${expectedKind}`)
  const body = normalise(trimmed.slice(3))
  if (!BODY_PATTERN.test(body)) return fail("body must be 26 base32 characters (0-9, a-z without i, l, o, u)")
  const bytes = decodeBase32(body)
  if (bytes === undefined) return fail("body is not a canonical encoding of 16 bytes")
  if ((bytes[6]! >> 4) !== 7) return fail("body is not a UUIDv7")
  if ((bytes[8]! >> 6) !== 2) return fail("body does not carry the RFC 9562 UUID variant")
  return { id: kind + body, kind, bytes, createdAtMillis: timestampOf(bytes) }
}

export const isInstanceId = (input: string): boolean => !(parseInstanceId(input) instanceof InvalidInstanceId)

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")

/** Canonical UUID text of the ID's body, e.g. `01970a1c-e31e-7422-9cd5-e9651d11cc97`. */
export const uuidOf = (parsed: ParsedInstanceId): string => {
  const h = hex(parsed.bytes)
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

/** Bucket key form used by the original server: canonical UUID, `-`, kind (sorts by creation time too). */
export const storageKeyOf = (parsed: ParsedInstanceId): string => `${uuidOf(parsed)}-${parsed.kind}`

/** Inverse of `storageKeyOf`. */
export const parseStorageKey = (key: string): ParsedInstanceId | InvalidInstanceId => {
  const match = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})-([a-z]{3})$/.exec(key)
  if (match === null) return new InvalidInstanceId({ input: key, reason: "not a storage key (<uuid>-<kind>)" })
  const bytes = Uint8Array.from(Buffer.from(match.slice(1, 6).join(""), "hex"))
  return parseInstanceId(match[6]! + encodeBase32(bytes), match[6])
}
