/**
 * How long things take in the simulated cluster. Durations are written in real-PVE seconds and scaled by
 * `timeScale`, so the relations that matter (a 2 GiB full clone holds the storage lock for less than the 10 s
 * lock timeout, a third parallel clone does not) hold at every speed.
 */

export interface LatencyModel {
  readonly name: string
  /** Simulated milliseconds per real-PVE millisecond: 1 = realistic, 0.01 = a hundred times faster. */
  readonly timeScale: number
  /** Time a pveproxy worker spends on any API call, in (unscaled) milliseconds, drawn uniformly. */
  readonly requestMs: readonly [number, number]
  /** Relative jitter (±) applied to task phases that are not lock-bound. */
  readonly jitter: number
}

/** Real-PVE durations in seconds (before scaling); the figures follow DESIGN §8 and observed task logs. */
export const PVE_SECONDS = {
  lockTimeout: 10,
  cloneTargetLockTimeout: 1,
  resourcesRefresh: 10,
  cloneSetup: 1,
  fullCopyPerGiB: 4.5,
  linkedSnapshot: 0.2,
  config: 0.3,
  resize: 0.5,
  start: 1.5,
  stop: 0.8,
  shutdown: 4,
  destroy: 1,
  uploadBase: 0.3,
  uploadPerMiB: 0.005,
  deleteVolume: 0.2,
  storageOp: 0.2
} as const

/** The default: tasks take tens of milliseconds, so a test suite runs fast. */
export const LatencyFast: LatencyModel = { name: "fast", timeScale: 0.01, requestMs: [0, 2], jitter: 0.1 }

/** Close to a real cluster: seconds-long clones, 10 s lock timeouts, 10 s resource refresh. */
export const LatencyRealistic: LatencyModel = { name: "realistic", timeScale: 1, requestMs: [5, 40], jitter: 0.2 }

/** Between the two: useful for demos (`npm start`) where progress should be visible but quick. */
export const LatencyDemo: LatencyModel = { name: "demo", timeScale: 0.2, requestMs: [2, 10], jitter: 0.2 }

export const latencyPresets: Readonly<Record<string, LatencyModel>> = {
  fast: LatencyFast,
  demo: LatencyDemo,
  realistic: LatencyRealistic
}

/** Scaled milliseconds for a duration given in real-PVE seconds. */
export const scaled = (model: LatencyModel, seconds: number): number => seconds * 1000 * model.timeScale
