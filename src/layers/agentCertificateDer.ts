/**
 * Agents' client certificates, encoded straight to DER and signed with Node's Ed25519. Every agent
 * registration and renewal issues one, and through @peculiar/x509 that cost ~5 ms of CPU on the endpoint's
 * one event loop (generic ASN.1 objects rebuilt per field, the finished certificate re-parsed) — most of a
 * registration. The certificate's shape never varies (Ed25519 keys, the CA's issuer name, CN + O, the same
 * five extensions), so only the serial, validity, subject and key are encoded per call, around parts built
 * once; signing is one `crypto.sign`. What it produces is read back by the library (`verifyClientCertificate`)
 * and by Node's TLS, and the tests check both. Operator and server certificates, issued rarely, stay on the
 * library.
 */
import { createHash, type KeyObject, randomBytes, sign } from "node:crypto"

// ---------------------------------------------------------------------------------------------------------
// DER

const length = (n: number): Buffer =>
  n < 0x80 ? Buffer.of(n) : n < 0x100 ? Buffer.of(0x81, n) : Buffer.of(0x82, n >> 8, n & 0xff)

const tlv = (tag: number, ...content: ReadonlyArray<Buffer>): Buffer => {
  const body = Buffer.concat(content)
  return Buffer.concat([Buffer.of(tag), length(body.length), body])
}

const sequence = (...content: ReadonlyArray<Buffer>) => tlv(0x30, ...content)
const set = (...content: ReadonlyArray<Buffer>) => tlv(0x31, ...content)
const octets = (content: Buffer) => tlv(0x04, content)
const bits = (content: Buffer) => tlv(0x03, Buffer.of(0), content)
const utf8 = (text: string) => tlv(0x0c, Buffer.from(text, "utf8"))

/** `YYMMDDHHMMSSZ` (UTCTime) until 2049, `YYYYMMDDHHMMSSZ` (GeneralizedTime) from 2050, as RFC 5280 says. */
const time = (date: Date): Buffer => {
  const iso = date.toISOString() // 2026-12-07T14:05:22.000Z
  const digits = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + "Z"
  return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(digits.slice(2), "latin1")) : tlv(0x18, Buffer.from(digits, "latin1"))
}

const OID = {
  commonName: Buffer.from("0603550403", "hex"),
  organization: Buffer.from("060355040a", "hex"),
  ed25519: Buffer.from("06032b6570", "hex")
}

/** v3, `[0] EXPLICIT INTEGER 2`. */
const VERSION = Buffer.from("a003020102", "hex")
const ED25519_ALGORITHM = sequence(OID.ed25519)
/** basicConstraints (critical, not a CA), keyUsage (critical, digitalSignature), extKeyUsage clientAuth. */
const FIXED_EXTENSIONS = Buffer.from(
  "300c0603551d130101ff04023000" + "300e0603551d0f0101ff040403020780" + "30130603551d25040c300a06082b06010505070302",
  "hex"
)

// ---------------------------------------------------------------------------------------------------------
// Issuing

export interface AgentCertificateIssuer {
  /** DER of the CA certificate's subject name (the issuer of every agent certificate). */
  readonly issuerName: Buffer
  /** The CA's key identifier (its SubjectKeyIdentifier), for each certificate's AuthorityKeyIdentifier. */
  readonly caKeyId: Buffer
  readonly caPrivateKey: KeyObject
}

export interface AgentCertificateRequest {
  readonly instanceId: string
  readonly tenant: string
  /** The agent's Ed25519 SubjectPublicKeyInfo, DER. */
  readonly spki: Buffer
  readonly notBefore: Date
  readonly notAfter: Date
}

export interface IssuedAgentCertificate {
  readonly certificatePem: string
  /** Lowercase hex of the serial's bytes (16, the first in 0x01–0x7f), as the x509 library reads it back. */
  readonly serial: string
  /** `notAfter` to the second, as encoded. */
  readonly notAfter: Date
}

/** An Ed25519 SPKI's raw 32-byte key: the last 32 bytes of its BIT STRING. */
const rawKey = (spki: Buffer): Buffer => spki.subarray(spki.length - 32)

/** The issuer's fixed parts: its name and key identifier, read once from the CA certificate. */
export const agentCertificateIssuer = (caCertificateDer: { readonly subjectName: Buffer; readonly subjectKeyId: Buffer | undefined; readonly spki: Buffer }, caPrivateKey: KeyObject): AgentCertificateIssuer => ({
  issuerName: caCertificateDer.subjectName,
  // RFC 5280's method 1 when the CA carries no identifier of its own.
  caKeyId: caCertificateDer.subjectKeyId ?? createHash("sha1").update(rawKey(caCertificateDer.spki)).digest(),
  caPrivateKey
})

const toSeconds = (date: Date) => new Date(Math.floor(date.getTime() / 1000) * 1000)

export const issueAgentCertificate = (issuer: AgentCertificateIssuer, request: AgentCertificateRequest): IssuedAgentCertificate => {
  const serial = randomBytes(16)
  serial[0] = (serial[0]! & 0x7f) | 0x01 // positive, and exactly 16 bytes
  const notAfter = toSeconds(request.notAfter)
  const subject = sequence(
    set(sequence(OID.commonName, utf8(request.instanceId))),
    set(sequence(OID.organization, utf8(request.tenant)))
  )
  const subjectKeyId = createHash("sha1").update(rawKey(request.spki)).digest()
  const extensions = tlv(0xa3, sequence(
    FIXED_EXTENSIONS,
    sequence(Buffer.from("0603551d23", "hex"), octets(sequence(tlv(0x80, issuer.caKeyId)))),
    sequence(Buffer.from("0603551d0e", "hex"), octets(octets(subjectKeyId)))
  ))
  const tbs = sequence(
    VERSION,
    tlv(0x02, serial),
    ED25519_ALGORITHM,
    issuer.issuerName,
    sequence(time(toSeconds(request.notBefore)), time(notAfter)),
    subject,
    request.spki,
    extensions
  )
  const certificate = sequence(tbs, ED25519_ALGORITHM, bits(sign(null, tbs, issuer.caPrivateKey)))
  const base64 = certificate.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "")
  return {
    certificatePem: `-----BEGIN CERTIFICATE-----\n${base64}\n-----END CERTIFICATE-----\n`,
    serial: serial.toString("hex"),
    notAfter
  }
}
