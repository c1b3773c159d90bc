/**
 * Every retry and loop of the shard actor, named in one place so their bounds can be read (and tuned) side
 * by side. Each is an Effect `Schedule`, so simulations run them on `TestClock`.
 */
import { Duration, Schedule } from "effect"

/**
 * A saga that gave up on a transient failure is started again by its runner: capped, jittered exponential
 * backoff from 2 s to 5 min, without end while this replica leads — a create or delete is never dropped.
 */
export const sagaRestart = Schedule.exponential("2 seconds", 2).pipe(
  Schedule.jittered,
  Schedule.union(Schedule.spaced("5 minutes"))
)

/**
 * A group whose creates were compensated waits before its next create: 2 s after the first compensation,
 * doubling with each one after, at most 5 min; a VM of the group that runs again resets it. Reconcile steps
 * it once per compensation it sees (`nextGroupBackoff`). Not jittered: one group's wait is no herd to spread,
 * and a jitter would draw from `Random`, which the seeded chaos worlds pin.
 */
export const groupCreateBackoff = Schedule.exponential("2 seconds", 2).pipe(
  Schedule.union(Schedule.spaced("5 minutes"))
)

/** A full reconcile pass even when nothing signalled a change (PVE refreshes its resources every ~10 s). */
export const RECONCILE_PERIOD = Duration.seconds(30)

/** Events that arrive close together are handled in one pass. */
export const RECONCILE_DEBOUNCE = Duration.millis(200)

/** How often the leader checks the bucket's config for a change (a HEAD; the body only when the etag moved). */
export const CONFIG_POLL = Duration.seconds(5)

/** Cluster node usage is read at most this often and shared by concurrent placements. */
export const NODE_RESOURCES_TTL = Duration.seconds(5)

/**
 * A placement charges its node for this long, so concurrent and back-to-back placements spread before PVE's
 * `/cluster/resources` (refreshed about every 10 s) shows the new VMs.
 */
export const PLACEMENT_CHARGE_TTL = Duration.seconds(30)

/** A VM carrying this shard's tags that the log does not know is collected only after this grace. */
export const ORPHAN_GRACE = Duration.minutes(2)

/** A running instance whose VM is absent or stopped for this long is replaced. */
export const VM_LOSS_GRACE = Duration.seconds(20)

/**
 * How long an `nstance-<id>.iso` of an instance this shard's log does not know stays before the GC deletes
 * it. Shards of a cluster share the ISO storage and the name carries no shard, so such an ISO may be another
 * shard's upload waiting for its clone: an hour is far beyond any upload-to-clone wait, and a true orphan
 * (an upload that finished after its instance's delete) still goes.
 */
export const UNKNOWN_ISO_GRACE = Duration.hours(1)

/**
 * The leader's preflight against PVE runs at the start of its term, when a config change alters what the
 * shard needs, and at this interval (about ten GETs a run): a template or storage an operator adds (or
 * removes) is seen within it.
 */
export const PREFLIGHT_INTERVAL = Duration.minutes(5)

/** How long a placement waits for the term's first preflight before it places without its findings. */
export const PREFLIGHT_FIRST_WAIT = Duration.seconds(30)
