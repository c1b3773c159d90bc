/**
 * What an agent signs to authenticate `ReportHealth` and `RenewCertificate`: a fixed, line-based
 * statement (no JSON canonicalisation to get wrong) naming the procedure, the certificate presented (by
 * hash), the request's content and the signing time. Client and server build it with the same functions,
 * so a signature for one procedure, certificate or body never verifies for another.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify } from "node:crypto"

export const SIGNATURE_CONTEXT = "nstance-agent-request-v1"

/** A signature is accepted for this long either side of the server's clock (agents' clocks drift). */
export const SIGNATURE_WINDOW_MILLIS = 5 * 60_000

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex")

export type AgentHealthStatus = "healthy" | "degraded" | "unhealthy"

export const healthStatement = (input: {
  readonly certificatePem: string
  readonly status: AgentHealthStatus
  readonly signedAt: number
}): Uint8Array =>
  Buffer.from(
    [SIGNATURE_CONTEXT, "ReportHealth", sha256(input.certificatePem), String(input.signedAt), input.status].join("\n"),
    "utf8"
  )

export const renewStatement = (input: {
  readonly certificatePem: string
  readonly publicKeyPem: string
  readonly signedAt: number
}): Uint8Array =>
  Buffer.from(
    [SIGNATURE_CONTEXT, "RenewCertificate", sha256(input.certificatePem), String(input.signedAt), sha256(input.publicKeyPem)]
      .join("\n"),
    "utf8"
  )

/** Ed25519 signature of `statement` with a PKCS#8 PEM private key, base64url. */
export const signStatement = (privateKeyPem: string, statement: Uint8Array): string =>
  sign(null, statement, createPrivateKey(privateKeyPem)).toString("base64url")

/** True when `signature` (base64url) is a valid Ed25519 signature of `statement` by the SPKI PEM key. */
export const verifyStatement = (publicKeyPem: string, statement: Uint8Array, signature: string): boolean => {
  try {
    const key = createPublicKey(publicKeyPem)
    if (key.asymmetricKeyType !== "ed25519") return false
    return verify(null, statement, key, Buffer.from(signature, "base64url"))
  } catch {
    return false
  }
}
