/**
 * The NoCloud seed a VM boots with: `meta-data` naming the instance and `user-data` as the operator wrote it
 * (a bare script gets a bash shebang, as the original server does). One function builds the seed for both
 * the create saga and `nstance-admin iso`, so the preview is exactly what a VM gets.
 */
import { Data } from "effect"

export class InvalidCloudInitInput extends Data.TaggedError("InvalidCloudInitInput")<{
  readonly field: string
  readonly reason: string
}> {
  override get message() {
    return `invalid cloud-init ${this.field}: ${this.reason}`
  }
}

export interface CloudInitSeed {
  readonly userData: string
  readonly metaData: string
  readonly networkConfig?: string
}

// RFC 1123 label: what `local-hostname` becomes in /etc/hostname, so anything else would break the guest.
const DNS_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/
// Values YAML reads back as the same plain string (no indicators, no bool/null/number look-alikes matter
// for a string field cloud-init reads with str(), but quoting them anyway costs nothing).
const PLAIN_SCALAR = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
const YAML_SPECIAL = /^(?:true|false|yes|no|on|off|null|~|[0-9][0-9._eE+-]*)$/i

/** A YAML scalar for a string: plain when unambiguous, else double-quoted (JSON strings are valid YAML). */
const yamlScalar = (value: string): string =>
  PLAIN_SCALAR.test(value) && !YAML_SPECIAL.test(value) ? value : JSON.stringify(value)

export const isDnsLabel = (value: string): boolean => DNS_LABEL.test(value)

/** `meta-data` per NoCloud: `instance-id` (cloud-init re-runs per-instance modules when it changes) and hostname. */
export const metaDataFor = (instanceId: string, hostname: string): string | InvalidCloudInitInput => {
  if (instanceId.trim() === "") return new InvalidCloudInitInput({ field: "instance-id", reason: "must not be empty" })
  // Control characters (newlines above all) would let an id inject extra meta-data keys.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(instanceId)) {
    return new InvalidCloudInitInput({ field: "instance-id", reason: `${JSON.stringify(instanceId)} contains control characters` })
  }
  if (!isDnsLabel(hostname)) {
    return new InvalidCloudInitInput({
      field: "local-hostname",
      reason: `${JSON.stringify(hostname)} is not a DNS label (1-63 letters, digits or inner hyphens)`
    })
  }
  return `instance-id: ${yamlScalar(instanceId)}\nlocal-hostname: ${yamlScalar(hostname)}\n`
}

/**
 * cloud-init runs user-data as a script only when it starts with `#!`; the original server treats anything
 * that is neither a script nor `#cloud-config` as a bash script body. A MIME multipart document (what the
 * create saga makes when agent registration is on) is kept as it is too. The check trims, the result does not.
 */
export const normaliseUserData = (text: string): string => {
  const trimmed = text.trim()
  return trimmed.startsWith("#!") || trimmed.startsWith("#cloud-config") || /^content-type:\s*multipart\//i.test(trimmed)
    ? text
    : `#!/bin/bash\n${text}`
}

/** The three files of the seed ISO (`network-config` only when given). */
export const cloudInitSeed = (input: {
  readonly instanceId: string
  readonly hostname?: string
  readonly userData: string
  readonly networkConfig?: string
}): CloudInitSeed | InvalidCloudInitInput => {
  const metaData = metaDataFor(input.instanceId, input.hostname ?? input.instanceId)
  if (metaData instanceof InvalidCloudInitInput) return metaData
  const userData = normaliseUserData(input.userData)
  return input.networkConfig === undefined ? { userData, metaData } : { userData, metaData, networkConfig: input.networkConfig }
}
