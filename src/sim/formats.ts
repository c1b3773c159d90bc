/**
 * PVE's named parameter formats (`pve-node`, `pve-tag-list`, `dns-name`, …) and its property strings
 * (`virtio,bridge=vmbr0,tag=10`), checked the way pveproxy's JSONSchema verifier does, so a value real PVE
 * would reject is rejected here with a comparable message. Formats we do not model are accepted.
 */

/** A verifier returns an error text (PVE's wording where known) or undefined when the value is fine. */
type Verifier = (value: string) => string | undefined

const test = (pattern: RegExp, message: string): Verifier => (value) => (pattern.test(value) ? undefined : message)

const listOf = (item: Verifier, separators: RegExp = /[,;\s]+/): Verifier => (value) => {
  for (const part of value.split(separators)) {
    if (part === "") continue
    const error = item(part)
    if (error !== undefined) return error
  }
  return undefined
}

const CONTENT_TYPES = new Set(["images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"])
const STORAGE_ID = /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i
const DEVICE = /^(?:ide[0-3]|sata[0-5]|scsi(?:[12]?\d|30)|virtio(?:1[0-5]|\d)|net(?:3[01]|[12]?\d)|hostpci(?:1[0-5]|\d)|usb(?:1[0-4]|\d)|efidisk0|tpmstate0)$/

const volumeId: Verifier = (value) =>
  /^[a-z][a-z0-9\-_.]*[a-z0-9]:.+$/i.test(value) ? undefined : `unable to parse volume ID '${value}'`

const bootOrder: Verifier = (value) => {
  // Both the legacy letters (`cdn`) and `order=dev;dev` are accepted, as by qemu-server.
  if (/^(?:legacy=)?[acdn]{1,4}$/.test(value)) return undefined
  const match = /^order=(.+)$/.exec(value)
  if (match === null) return "format error"
  for (const device of (match[1] ?? "").split(";")) {
    if (!DEVICE.test(device)) return `invalid boot device '${device}'`
  }
  return undefined
}

const NAMED: Readonly<Record<string, Verifier>> = {
  "pve-node": test(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/i, "value does not look like a valid node name"),
  "pve-vmid": test(/^\d+$/, "value does not look like a valid VM ID"),
  "pve-storage-id": (value) => (STORAGE_ID.test(value) ? undefined : `storage ID '${value}' contains illegal characters`),
  "pve-configid": (value) => (/^[a-z][a-z0-9_-]+$/i.test(value) ? undefined : `invalid configuration ID '${value}'`),
  "pve-configid-list": listOf((value) => (/^[a-z][a-z0-9_-]+$/i.test(value) ? undefined : `invalid configuration ID '${value}'`)),
  "pve-storage-content": (value) => (CONTENT_TYPES.has(value) ? undefined : `invalid content type '${value}'`),
  "pve-storage-content-list": listOf((value) => (CONTENT_TYPES.has(value) ? undefined : `invalid content type '${value}'`)),
  "dns-name": test(
    /^(?:(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)\.)*(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)$/i,
    "value does not look like a valid DNS name"
  ),
  "pve-poolid": test(/^[A-Za-z0-9_\-./]+$/, "invalid pool ID"),
  "pve-tag-list": listOf((value) => (/^[a-z0-9_][a-z0-9_\-+.]*$/i.test(value) ? undefined : `invalid tag '${value}'`), /[;, ]/),
  "pve-bridge-id": test(/^[-_.\w]+$/, "invalid bridge ID"),
  "mac-addr": test(/^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$/i, "value does not look like a valid unicast MAC address"),
  "disk-size": test(/^\d+(?:\.\d+)?[KMGT]?$/, "unable to parse size"),
  "pve-volume-id": volumeId,
  "pve-volume-id-or-qm-path": (value) =>
    value === "none" || value === "cdrom" || value.startsWith("/") ? undefined : volumeId(value),
  "pve-volume-id-or-absolute-path": (value) => (value.startsWith("/") ? undefined : volumeId(value)),
  "pve-qm-boot": bootOrder,
  "pve-qm-bootdisk": test(DEVICE, "invalid boot disk"),
  "urlencoded": test(/^[%\w.~\-+ ]*$/, "value contains characters that must be URL-encoded"),
  "CIDR": test(/^(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f:]+)\/\d{1,3}$/i, "value does not look like a valid CIDR network")
}

/** Checks a named format; unknown formats pass (we only model those our client can plausibly send). */
export const checkNamedFormat = (format: string, value: string): string | undefined => NAMED[format]?.(value)

export const isKnownFormat = (format: string): boolean => format in NAMED
