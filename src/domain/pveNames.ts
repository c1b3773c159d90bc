/**
 * The names nstance gives things on the PVE side (outside tags, which `pveTags.ts` owns, and the notes
 * block, which `managedNotes.ts` owns): the cloud-init ISO of an instance, its volume id, the drive that
 * mounts it, and the original Go server's ISO naming that GC still recognises. The create saga writes these
 * names and GC parses them back, so both must come from one spelling.
 */

/** The cloud-init ISO of an instance: named after the instance, so GC can tell whose it is. */
export const isoFileName = (instanceId: string) => `nstance-${instanceId}.iso`

/** The volume id PVE gives `isoFileName(instanceId)` uploaded to `storage`. */
export const isoVolid = (storage: string, instanceId: string) => `${storage}:iso/${isoFileName(instanceId)}`

/** The `ide2` value that mounts an ISO volume as the VM's CD-ROM (PVE requires `media=cdrom` for ISOs). */
export const cdromDrive = (volid: string) => `${volid},media=cdrom`

// An instance id is a three-letter kind and 26 Crockford base32 characters (see instanceId.ts).
const OUR_ISO = /^[^:]+:iso\/nstance-([a-z]{3}[0-9a-hj-km-np-tv-z]{26})\.iso$/
// The original server named its ISOs after the VMID.
const ORIGINAL_ISO = /^[^:]+:iso\/user-data-(\d+)\.iso$/

/** The instance id of an `isoVolid` volume, or undefined when the volume is not one of ours. */
export const instanceIdOfIsoVolid = (volid: string): string | undefined => OUR_ISO.exec(volid)?.[1]

/** The VMID of the original server's `user-data-<vmid>.iso` volume, or undefined when it is not one. */
export const vmidOfOriginalIsoVolid = (volid: string): number | undefined => {
  const match = ORIGINAL_ISO.exec(volid)
  return match === null ? undefined : Number(match[1])
}
