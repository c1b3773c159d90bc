/**
 * A 32-byte AES-256 key as operators write it, in an environment variable or a file: 64 hex characters,
 * base64, or — the original server's own form — 32 printable characters taken as the key bytes
 * themselves. One parser for the PKI's key and the secrets store's keys, so the forms cannot drift.
 * Errors say what is wrong with the text, never the text.
 */
import { Either } from "effect"

const HEX_KEY = /^[0-9a-fA-F]{64}$/
const BASE64_KEY = /^[A-Za-z0-9+/_-]{43}={0,1}$/

/** The key bytes of `text` (surrounding whitespace ignored), or why it is not a key. */
export const parseEncryptionKeyText = (text: string): Either.Either<Uint8Array, string> => {
  const trimmed = text.trim()
  if (trimmed === "") return Either.left("empty")
  if (HEX_KEY.test(trimmed)) return Either.right(new Uint8Array(Buffer.from(trimmed, "hex")))
  if (BASE64_KEY.test(trimmed)) {
    const bytes = Buffer.from(trimmed.replace(/-/g, "+").replace(/_/g, "/"), "base64")
    if (bytes.length === 32) return Either.right(new Uint8Array(bytes))
  }
  // Deploy scripts of the original generate 24 random bytes in base64: printable, and survives trimming.
  if (/^[\x21-\x7e]{32}$/.test(trimmed)) return Either.right(new Uint8Array(Buffer.from(trimmed, "latin1")))
  return Either.left(
    `expected 32 bytes as 64 hex characters, base64, or 32 printable characters (got ${trimmed.length} characters); ` +
      `generate one with: openssl rand -hex 32`
  )
}
