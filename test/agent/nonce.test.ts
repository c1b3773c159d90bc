import { createHash, createPrivateKey, randomBytes } from "node:crypto"
import { pkiObjectKeys } from "../../src/domain/bucketKeys.js"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Redacted, TestClock } from "effect"
import { SignJWT } from "jose"
import { MAX_NONCE_LENGTH, NONCE_CREATE_ALLOWANCE, nonceHash, nonceLifetime } from "../../src/domain/agent/nonce.js"
import { makeClusterPki, openSecret } from "../../src/layers/ClusterPkiStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"

const encryptionKey = new Uint8Array(randomBytes(32))
const START = Date.parse("2026-03-01T12:00:00Z")
const request = { instanceId: "vmx01hq2z", cluster: "c1", shard: "s1", tenant: "acme", group: "web", ttl: "10 minutes" } as const
const audience = { cluster: "c1", shard: "s1" }

/** A PKI on a fresh memory store at a realistic TestClock time, plus a signer with its nonce key. */
const setup = Effect.gen(function* () {
  yield* TestClock.setTime(START)
  const store = makeMemoryStore()
  const pki = yield* makeClusterPki(store, { clusterId: "c1", encryptionKey })
  const keys = pkiObjectKeys("c1")
  const noncePem = Either.getOrThrow(openSecret(encryptionKey, (yield* store.get(keys.nonceKey)).body, keys.nonceKey))
  const nonceKey = createPrivateKey(noncePem)
  /** Any claims, signed with the cluster's real nonce key: what only a bug or a leaked key could produce. */
  const signOwn = (claims: Record<string, unknown>) =>
    Effect.promise(() => new SignJWT(claims).setProtectedHeader({ alg: "EdDSA" }).sign(nonceKey))
  return { pki, signOwn }
})

const validClaims = (now: number) => ({
  sub: "vmx01hq2z", kind: "agent", cluster: "c1", shard: "s1", tenant: "acme", group: "web",
  jti: "abcdefghijklmnopqrstuv", iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 600
})

describe("registration nonces", () => {
  it.effect("a minted nonce verifies, carries the claims, and is handed out redacted with its SHA-256 hash", () =>
    Effect.gen(function* () {
      const { pki } = yield* setup
      const minted = yield* pki.mintNonce(request)
      const jwt = Redacted.value(minted.jwt)
      expect(String(minted.jwt)).toBe("<redacted>")
      expect(JSON.stringify(minted)).not.toContain(jwt)
      expect(minted.hash).toBe(createHash("sha256").update(jwt).digest("hex"))
      expect(minted.hash).toBe(nonceHash(jwt))
      expect(JSON.parse(Buffer.from(jwt.split(".")[0]!, "base64url").toString())).toMatchObject({ alg: "EdDSA" })
      const claims = yield* pki.verifyNonce(jwt, audience)
      expect(claims).toMatchObject({ sub: "vmx01hq2z", kind: "agent", cluster: "c1", shard: "s1", tenant: "acme", group: "web" })
      expect(claims.iat).toBe(START / 1000)
      expect(claims.exp - claims.iat).toBe(600)
      expect(claims.jti.length).toBeGreaterThanOrEqual(16)
      const other = yield* pki.mintNonce(request)
      expect(other.claims.jti).not.toBe(claims.jti)
      expect(other.hash).not.toBe(minted.hash)
    }))

  it.effect("expiry follows the Clock: valid just before exp, NonceExpired after it", () =>
    Effect.gen(function* () {
      const { pki } = yield* setup
      const jwt = Redacted.value((yield* pki.mintNonce(request)).jwt)
      yield* TestClock.adjust(Duration.subtract(Duration.minutes(10), Duration.seconds(1)))
      expect((yield* pki.verifyNonce(jwt, audience)).sub).toBe("vmx01hq2z")
      yield* TestClock.adjust("1 minute")
      const error = yield* Effect.flip(pki.verifyNonce(jwt, audience))
      expect(error._tag).toBe("NonceExpired")
      expect(error.reason).toBe("Expired")
      expect(error.message).toContain(new Date(START + 600_000).toISOString())
    }))

  it.effect("forged: another cluster's key, a tampered payload, HS256 or alg none are NonceBadSignature", () =>
    Effect.gen(function* () {
      const { pki } = yield* setup
      const stranger = yield* makeClusterPki(makeMemoryStore(), { clusterId: "c1", encryptionKey })
      const foreign = Redacted.value((yield* stranger.mintNonce(request)).jwt)
      expect(yield* Effect.flip(pki.verifyNonce(foreign, audience))).toMatchObject({ _tag: "NonceBadSignature", reason: "BadSignature" })

      const [header, , signature] = Redacted.value((yield* pki.mintNonce(request)).jwt).split(".")
      const tampered = Buffer.from(JSON.stringify({ ...validClaims(START), sub: "vmxother" })).toString("base64url")
      expect((yield* Effect.flip(pki.verifyNonce(`${header}.${tampered}.${signature}`, audience)))._tag).toBe("NonceBadSignature")

      const hs256 = yield* Effect.promise(() =>
        new SignJWT(validClaims(START)).setProtectedHeader({ alg: "HS256" }).sign(new Uint8Array(32)))
      expect((yield* Effect.flip(pki.verifyNonce(hs256, audience)))._tag).toBe("NonceBadSignature")

      const none = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(JSON.stringify(validClaims(START))).toString("base64url")}.`
      expect((yield* Effect.flip(pki.verifyNonce(none, audience)))._tag).toBe("NonceMalformed")
      const noneSigned = none + "AAAA"
      expect((yield* Effect.flip(pki.verifyNonce(noneSigned, audience)))._tag).toBe("NonceBadSignature")
    }))

  it.effect("a token signed with our key but of another kind is NonceWrongKind", () =>
    Effect.gen(function* () {
      const { pki, signOwn } = yield* setup
      const admin = yield* signOwn({ ...validClaims(START), kind: "admin" })
      expect(yield* Effect.flip(pki.verifyNonce(admin, audience))).toMatchObject({ _tag: "NonceWrongKind", kind: "admin", reason: "WrongKind" })
      const noKind = yield* signOwn({ ...validClaims(START), kind: undefined })
      expect((yield* Effect.flip(pki.verifyNonce(noKind, audience)))._tag).toBe("NonceWrongKind")
    }))

  it.effect("a nonce for another shard or cluster is NonceWrongShard", () =>
    Effect.gen(function* () {
      const { pki } = yield* setup
      const forS2 = Redacted.value((yield* pki.mintNonce({ ...request, shard: "s2" })).jwt)
      expect(yield* Effect.flip(pki.verifyNonce(forS2, audience))).toMatchObject({
        _tag: "NonceWrongShard",
        reason: "WrongShard",
        expected: { cluster: "c1", shard: "s1" },
        actual: { cluster: "c1", shard: "s2" }
      })
      expect((yield* pki.verifyNonce(forS2, { cluster: "c1", shard: "s2" })).shard).toBe("s2")
      const forC2 = Redacted.value((yield* pki.mintNonce({ ...request, cluster: "c2" })).jwt)
      expect((yield* Effect.flip(pki.verifyNonce(forC2, audience)))._tag).toBe("NonceWrongShard")
    }))

  it.effect("garbage, an oversized token, or missing claims are NonceMalformed, never echoing the token", () =>
    Effect.gen(function* () {
      const { pki, signOwn } = yield* setup
      for (const bad of ["", "abc", "a.b", "a.b.c", "!!.??.**", "x".repeat(MAX_NONCE_LENGTH + 1)]) {
        const error = yield* Effect.flip(pki.verifyNonce(bad, audience))
        expect(error._tag).toBe("NonceMalformed")
        if (bad.length > 3) expect(error.message).not.toContain(bad)
      }
      const { jti: _, ...withoutJti } = validClaims(START)
      expect((yield* Effect.flip(pki.verifyNonce(yield* signOwn(withoutJti), audience)))._tag).toBe("NonceMalformed")
      const numericTenant = yield* signOwn({ ...validClaims(START), tenant: 42 })
      expect((yield* Effect.flip(pki.verifyNonce(numericTenant, audience)))._tag).toBe("NonceMalformed")
    }))

  it.effect("a create's nonce outlives a slow create: registration_timeout from the mint plus the create allowance", () =>
    Effect.gen(function* () {
      const { pki } = yield* setup
      const registrationTimeout = Duration.minutes(5)
      const minted = yield* pki.mintNonce({ ...request, ttl: nonceLifetime(registrationTimeout) })
      const jwt = Redacted.value(minted.jwt)
      // Two hours of upload, queued clone and start later, the VM boots; its agent still has the whole window.
      yield* TestClock.adjust(Duration.sum(Duration.hours(2), registrationTimeout))
      expect((yield* pki.verifyNonce(jwt, audience)).sub).toBe("vmx01hq2z")
      expect(minted.claims.exp - minted.claims.iat).toBe(Duration.toSeconds(Duration.sum(registrationTimeout, NONCE_CREATE_ALLOWANCE)))
      yield* TestClock.adjust(NONCE_CREATE_ALLOWANCE)
      expect(yield* Effect.flip(pki.verifyNonce(jwt, audience))).toMatchObject({ reason: "Expired" })
    }))
})
