/**
 * The two kinds of waiting that shape PVE's behaviour under load: flock-style config/storage locks that give
 * up after a timeout (`can't lock file … - got timeout`), and the fixed pool of pveproxy workers in front of
 * every call. Both are FIFO, as the kernel's flock queue and pveproxy's accept queue effectively are.
 */
import { Data } from "effect"

export class LockTimeout extends Data.TaggedError("LockTimeout")<{ readonly file: string }> {
  override get message() {
    return `can't lock file '${this.file}' - got timeout`
  }
}

interface Waiter {
  readonly shared: boolean
  readonly grant: () => void
}

/**
 * Where the simulator's clock and timers come from: real time by default, or an injected source (the
 * in-process `ProxmoxApiSim` layer hands in Effect's `Clock`, so `TestClock` drives tasks, locks and lags).
 */
export interface SimTime {
  readonly now: () => number
  readonly sleep: (ms: number) => Promise<void>
}

/** A shared/exclusive lock on one file; `acquire` resolves to a release function or rejects with LockTimeout. */
export class FileLock {
  private exclusive = false
  private sharedCount = 0
  private readonly waiters: Array<Waiter> = []

  /** Without `time`, timeouts are real (cancelled) timers; with it, they sleep on the injected source. */
  constructor(readonly file: string, private readonly time?: SimTime) {}

  get held(): boolean {
    return this.exclusive || this.sharedCount > 0
  }

  get queued(): number {
    return this.waiters.length
  }

  private canGrant(shared: boolean): boolean {
    return shared ? !this.exclusive : !this.exclusive && this.sharedCount === 0
  }

  private take(shared: boolean): () => void {
    if (shared) this.sharedCount++
    else this.exclusive = true
    let released = false
    return () => {
      if (released) return
      released = true
      if (shared) this.sharedCount--
      else this.exclusive = false
      this.pump()
    }
  }

  private pump(): void {
    while (this.waiters.length > 0) {
      const head = this.waiters[0]
      if (head === undefined || !this.canGrant(head.shared)) return
      this.waiters.shift()
      head.grant()
    }
  }

  /** Non-blocking attempt; undefined when the lock is busy or others are queued (no overtaking). */
  tryAcquire(shared = false): (() => void) | undefined {
    return this.waiters.length === 0 && this.canGrant(shared) ? this.take(shared) : undefined
  }

  acquire(timeoutMs: number, shared = false): Promise<() => void> {
    const immediate = this.tryAcquire(shared)
    if (immediate !== undefined) return Promise.resolve(immediate)
    const time = this.time
    return new Promise((resolve, reject) => {
      let granted = false
      const waiter: Waiter = {
        shared,
        grant: () => {
          granted = true
          if (timer !== undefined) clearTimeout(timer)
          resolve(this.take(shared))
        }
      }
      const expire = () => {
        if (granted) return
        const index = this.waiters.indexOf(waiter)
        if (index >= 0) this.waiters.splice(index, 1)
        reject(new LockTimeout({ file: this.file }))
        // A timed-out exclusive waiter may have been blocking shared waiters behind it.
        this.pump()
      }
      const timer = time === undefined ? setTimeout(expire, Math.max(0, timeoutMs)) : undefined
      if (time !== undefined) void time.sleep(Math.max(0, timeoutMs)).then(expire)
      this.waiters.push(waiter)
    })
  }
}

/** A counting semaphore (the pveproxy worker pool). */
export class WorkerPool {
  private busy = 0
  private readonly waiters: Array<() => void> = []
  private maxQueued = 0

  constructor(readonly size: number) {}

  get inUse(): number {
    return this.busy
  }

  get queued(): number {
    return this.waiters.length
  }

  /** The longest queue seen, for benches that want to show saturation. */
  get peakQueue(): number {
    return this.maxQueued
  }

  acquire(): Promise<() => void> {
    const release = () => {
      const next = this.waiters.shift()
      if (next !== undefined) next()
      else this.busy--
    }
    if (this.busy < this.size) {
      this.busy++
      return Promise.resolve(once(release))
    }
    return new Promise((resolve) => {
      this.waiters.push(() => resolve(once(release)))
      this.maxQueued = Math.max(this.maxQueued, this.waiters.length)
    })
  }
}

const once = (f: () => void): (() => void) => {
  let done = false
  return () => {
    if (done) return
    done = true
    f()
  }
}

export const sleep = (ms: number): Promise<void> =>
  ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms))

/** The default time source: `Date.now` and real timers. */
export const realTime: SimTime = { now: () => Date.now(), sleep }
