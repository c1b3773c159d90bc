/**
 * What a simulated VM "sees" when it boots: the ISO attached as its CD-ROM, read back with the project's own
 * ISO 9660 reader and parsed the way cloud-init's NoCloud datasource would (`readSeed`, shared with
 * `nstance-agent`). The result goes to a pluggable hook (an in-process agent in end-to-end tests), so the
 * whole path — ISO bytes included — is exercised.
 */

export interface GuestBoot {
  readonly node: string
  readonly vmid: number
  readonly name: string
  /** `instance-id` from meta-data. */
  readonly instanceId: string
  /** Top-level `key: value` pairs of meta-data (quoted scalars unquoted). */
  readonly metaData: Readonly<Record<string, string>>
  readonly userData: string
  readonly networkConfig?: string
  readonly volumeId: string
}

export type GuestHook = (boot: GuestBoot) => void | Promise<void>
