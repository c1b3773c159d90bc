import { describe, expect, it } from "@effect/vitest"
import { FileLock, LockTimeout, WorkerPool } from "../../src/sim/locks.js"

describe("FileLock", () => {
  it("lets a waiter in when the holder releases", async () => {
    const lock = new FileLock("/var/lock/qemu-server/lock-100.conf")
    const first = await lock.acquire(1000)
    const order: Array<string> = []
    const second = lock.acquire(1000).then((release) => { order.push("second"); release() })
    order.push("first releases")
    first()
    await second
    expect(order).toEqual(["first releases", "second"])
    expect(lock.held).toBe(false)
  })

  it("times out with PVE's message when the holder keeps it", async () => {
    const lock = new FileLock("/var/lock/qemu-server/lock-100.conf")
    const release = await lock.acquire(1000)
    const error = await lock.acquire(20).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(LockTimeout)
    expect(error instanceof Error ? error.message : "").toBe("can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout")
    release()
    expect(lock.held).toBe(false)
  })

  it("shares between readers and excludes a writer until all readers leave", async () => {
    const lock = new FileLock("/l")
    const r1 = await lock.acquire(100, true)
    const r2 = await lock.acquire(100, true)
    expect(lock.tryAcquire(false)).toBeUndefined()
    r1()
    expect(lock.tryAcquire(false)).toBeUndefined()
    r2()
    const w = lock.tryAcquire(false)
    expect(w).toBeDefined()
    expect(lock.tryAcquire(true)).toBeUndefined()
  })

  it("grants in FIFO order so a later waiter never overtakes", async () => {
    const lock = new FileLock("/l")
    const release = await lock.acquire(100)
    const order: Array<number> = []
    const waits = [1, 2, 3].map((n) => lock.acquire(1000).then((r) => { order.push(n); r() }))
    release()
    await Promise.all(waits)
    expect(order).toEqual([1, 2, 3])
  })
})

describe("WorkerPool", () => {
  it("runs at most `size` holders and queues the rest", async () => {
    const pool = new WorkerPool(3)
    const held = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    let fourth = false
    const pending = pool.acquire().then((r) => { fourth = true; return r })
    await new Promise((resolve) => setTimeout(resolve, 5))
    expect(fourth).toBe(false)
    expect(pool.queued).toBe(1)
    held[0]?.()
    const release = await pending
    expect(fourth).toBe(true)
    expect(pool.inUse).toBe(3)
    release()
    held[1]?.()
    held[2]?.()
    expect(pool.inUse).toBe(0)
  })
})
