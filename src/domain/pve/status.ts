/**
 * PVE's VM power state is two fields: `status` (running|stopped) and, for a running guest, `qmpstatus`
 * (running|paused|…). A paused VM shows as `status: running`, so mapping `status` alone never yields
 * Suspended (the original's weakness 14); this is the one place both are read.
 */

export type InstanceStatus = "Running" | "Stopped" | "Suspended" | "Unknown"

export const pveInstanceStatus = (status: string | undefined, qmpstatus?: string): InstanceStatus => {
  if (status === "running") {
    if (qmpstatus === undefined || qmpstatus === "running") return "Running"
    // suspended = hibernated to RAM by the guest; prelaunch/inmigrate/postmigrate are in-between states
    if (qmpstatus === "paused" || qmpstatus === "suspended") return "Suspended"
    return "Unknown"
  }
  if (status === "paused") return "Suspended"
  if (status === "stopped") return "Stopped"
  return "Unknown"
}

/**
 * The finer state the admin views and metrics show: `Suspended` split into PVE's two kinds. `/cluster/resources`
 * carries it in `status` alone (pvestatd records `qmpstatus || status`), `status/current` in `qmpstatus`.
 */
export const PVE_POWER_STATES = ["running", "paused", "suspended", "stopped", "unknown"] as const
export type PvePowerState = (typeof PVE_POWER_STATES)[number]

export const pvePowerState = (status: string | undefined, qmpstatus?: string): PvePowerState => {
  const shown = status === "running" && qmpstatus !== undefined ? qmpstatus : status
  switch (shown) {
    case "running":
    case "paused":
    case "suspended":
    case "stopped":
      return shown
    default:
      return "unknown"
  }
}
