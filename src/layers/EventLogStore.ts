/**
 * The shard event log on the (shard-scoped) object store. Segments `log/{seq:016}.json` are created with
 * IfAbsent, which is the fence: of two writers only one can own a sequence number, and the loser stops
 * writing at once. Concurrent appends share one segment (group commit) through a queue drained by a single
 * writer fiber, and the folded state is updated only after the segment is durable. Snapshots
 * `snapshot/{seq:016}.json` carry a checksum; replay takes the newest valid one plus the segments after it.
 * A local copy of the newest snapshot (`--cachedir`) lets a restart skip the snapshot download; it is
 * trusted only while the store still holds the segment it ends at, byte for byte.
 *
 * This file is the front: the layer, and the names the rest of nstance imports. Each concern lives in a module
 * of its own under `eventLog/` (paths, format, segmentStore, replay, writer, fencing, snapshots, snapshotCache).
 */
import { Effect, Layer } from "effect"
import { EventLog } from "../services/EventLog.js"
import { ObjectStore } from "../services/ObjectStore.js"
import type { EventLogOptions } from "./eventLog/options.js"
import { makeEventLog } from "./eventLog/writer.js"

export { parseSegment, parseSnapshot } from "./eventLog/format.js"
export type { EventLogOptions } from "./eventLog/options.js"
export { SEGMENT_KEY, segmentKey, SNAPSHOT_KEY, snapshotKey } from "./eventLog/paths.js"
export { type LoggedEvent, type Replayed, replayStore } from "./eventLog/replay.js"
export { fileSnapshotCache, type SnapshotCache, SnapshotCacheError } from "./eventLog/snapshotCache.js"
export { makeEventLog } from "./eventLog/writer.js"

/** The event log as a layer over the (shard-scoped) object store; the writer stops with the layer's scope. */
export const EventLogStore = (options: EventLogOptions = {}): Layer.Layer<EventLog, never, ObjectStore> =>
  Layer.scoped(EventLog, Effect.flatMap(ObjectStore, (store) => makeEventLog(store, options)))
