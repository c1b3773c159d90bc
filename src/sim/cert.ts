/**
 * A throw-away self-signed certificate for the simulator's HTTPS endpoint, made at start-up so a client is
 * exercised over TLS with an untrusted certificate, as against a fresh PVE install (`insecure_tls`, pinning).
 * Encoded by hand with node:crypto: @peculiar/x509 needs a global Reflect-metadata polyfill we do not ship,
 * and an ECDSA certificate with two extensions is a few dozen bytes of DER.
 */
import { createHash, generateKeyPairSync, sign, X509Certificate } from "node:crypto"

export interface SelfSignedCert {
  readonly certPem: string
  readonly keyPem: string
  /** SHA-256 of the DER certificate, upper-case hex with colons (as PVE shows it). */
  readonly fingerprint256: string
}

const length = (n: number): Buffer => {
  if (n < 0x80) return Buffer.from([n])
  const bytes: Array<number> = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

const tlv = (tag: number, ...content: ReadonlyArray<Buffer>): Buffer => {
  const body = Buffer.concat(content)
  return Buffer.concat([Buffer.from([tag]), length(body.length), body])
}

const seq = (...content: ReadonlyArray<Buffer>) => tlv(0x30, ...content)

const oid = (dotted: string): Buffer => {
  const parts = dotted.split(".").map(Number)
  const out: Array<number> = [40 * (parts[0] ?? 0) + (parts[1] ?? 0)]
  for (const part of parts.slice(2)) {
    const chunk: Array<number> = [part & 0x7f]
    for (let v = Math.floor(part / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f))
    out.push(...chunk)
  }
  return tlv(0x06, Buffer.from(out))
}

/** A non-negative DER INTEGER: minimal (no leading zero bytes, which DER rejects as padding), sign bit clear. */
export const derInteger = (bytes: Buffer): Buffer => {
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  const minimal = bytes.subarray(start)
  return tlv(0x02, (minimal[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), minimal]) : minimal)
}

const utcTime = (d: Date): Buffer => {
  const two = (n: number) => String(n).padStart(2, "0")
  const text = `${two(d.getUTCFullYear() % 100)}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`
  return tlv(0x17, Buffer.from(text, "ascii"))
}

const name = (cn: string) => seq(tlv(0x31, seq(oid("2.5.4.3"), tlv(0x0c, Buffer.from(cn, "utf8")))))

const pem = (label: string, der: Buffer): string =>
  `-----BEGIN ${label}-----\n${der.toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "")}\n-----END ${label}-----\n`

export const makeSelfSignedCert = (): SelfSignedCert => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" })
  const ecdsaSha256 = seq(oid("1.2.840.10045.4.3.2"))
  const now = Date.now()
  const subject = name("pve-sim.invalid")
  const san = seq(
    tlv(0x82, Buffer.from("localhost", "ascii")),
    tlv(0x87, Buffer.from([127, 0, 0, 1])),
    tlv(0x87, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]))
  )
  const extensions = tlv(0xa3, seq(
    seq(oid("2.5.29.19"), tlv(0x01, Buffer.from([0xff])), tlv(0x04, seq())),
    seq(oid("2.5.29.17"), tlv(0x04, san))
  ))
  const serial = createHash("sha256").update(String(now)).update(String(Math.random())).digest().subarray(0, 16)
  const tbs = seq(
    tlv(0xa0, derInteger(Buffer.from([2]))),
    derInteger(serial),
    ecdsaSha256,
    subject,
    seq(utcTime(new Date(now - 60_000)), utcTime(new Date(now + 365 * 86_400_000))),
    subject,
    publicKey.export({ type: "spki", format: "der" }),
    extensions
  )
  const signature = sign("sha256", tbs, privateKey)
  const der = seq(tbs, ecdsaSha256, tlv(0x03, Buffer.from([0]), signature))
  const certPem = pem("CERTIFICATE", der)
  // Parsing it back catches an encoding slip at start-up rather than in a client's TLS handshake.
  const parsed = new X509Certificate(certPem)
  return {
    certPem,
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    fingerprint256: parsed.fingerprint256
  }
}
