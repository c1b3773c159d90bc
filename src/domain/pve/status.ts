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
