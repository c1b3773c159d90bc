/**
 * The VMIDs nstance gives its VMs: a range of the provider options (`shard.infra.options.vmid_range`),
 * by default the original server's (from 10000, everything below being left to templates and VMs made by
 * hand), never inside the VMIDs the template script of the Proxmox guide picks (it counts up from 9000).
 * PVE's VMIDs are cluster-wide and anyone may take one at any time, so the allocator goes above every
 * VMID it has seen and skips every one it knows to be taken; only when the top of the range is reached does
 * it come back to free VMIDs lower down (PVE's own `nextid` and the original do the same).
 */

export interface VmidRange {
  readonly low: number
  readonly high: number
}

/** Every VMID PVE accepts. */
export const PVE_VMIDS: VmidRange = { low: 100, high: 999_999_999 }

/** Where the guide's `vm-template-setup.sh` puts templates: the next free VMID from 9000 (`--min-vmid 9100` per node, …). */
export const TEMPLATE_VMIDS: VmidRange = { low: 9_000, high: 9_999 }

/** The original's range: its `vmidFloor` (10000) up to PVE's highest VMID. */
export const DEFAULT_VMID_RANGE: VmidRange = { low: 10_000, high: PVE_VMIDS.high }

export const formatVmidRange = (range: VmidRange): string => `${range.low}-${range.high}`

const RANGE_TEXT = /^\s*(\d{1,10})\s*-\s*(\d{1,10})\s*$/

/** `"10000-99999"` as a range, or why it is not a usable one (the caller names the field). */
export const parseVmidRange = (text: string): VmidRange | string => {
  const match = RANGE_TEXT.exec(text)
  if (match === null) return `must be a VMID range "LOW-HIGH" such as "${formatVmidRange(DEFAULT_VMID_RANGE)}" (got ${JSON.stringify(text)})`
  const range = { low: Number(match[1]), high: Number(match[2]) }
  if (range.low < PVE_VMIDS.low || range.high > PVE_VMIDS.high) return `must lie within PVE's VMIDs ${formatVmidRange(PVE_VMIDS)} (got ${formatVmidRange(range)})`
  if (range.low > range.high) return `must go from low to high (got ${formatVmidRange(range)})`
  if (range.low <= TEMPLATE_VMIDS.high && range.high >= TEMPLATE_VMIDS.low) {
    return `must not overlap ${formatVmidRange(TEMPLATE_VMIDS)}, the VMIDs the template script gives templates (got ${formatVmidRange(range)}; e.g. "${formatVmidRange(DEFAULT_VMID_RANGE)}")`
  }
  return range
}

const firstFree = (from: number, to: number, taken: (vmid: number) => boolean): number | undefined => {
  // Ends within |taken| + 1 steps: every step but the last is a taken VMID.
  for (let vmid = from; vmid <= to; vmid++) if (!taken(vmid)) return vmid
  return undefined
}

/**
 * The VMID to use next: the first one in `range` above `above` that is not `taken`; past the range's top,
 * the first free one from its bottom; undefined when every VMID of the range is taken.
 */
export const pickVmid = (range: VmidRange, above: number, taken: (vmid: number) => boolean): number | undefined =>
  firstFree(Math.max(range.low, above + 1), range.high, taken) ?? firstFree(range.low, Math.min(above, range.high), taken)
