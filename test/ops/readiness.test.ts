import { describe, expect, it } from "vitest"
import { type ReadinessInput, readinessOf } from "../../src/domain/readiness.js"

const base: ReadinessInput = {
  replica: "a",
  isLeader: false,
  leaseTerm: 0,
  publishedTerm: undefined,
  leader: undefined,
  sinceContactMillis: 100,
  staleAfterMillis: 30_000
}

describe("readiness of a replica", () => {
  it("a leader is ready only once its term has started", () => {
    expect(readinessOf({ ...base, isLeader: true, leaseTerm: 3, publishedTerm: 3 })).toMatchObject({ ready: true, role: "leader" })
    expect(readinessOf({ ...base, isLeader: true, leaseTerm: 3 })).toMatchObject({ ready: false, role: "starting" })
    // A new term while the previous one's work is still being torn down.
    expect(readinessOf({ ...base, isLeader: true, leaseTerm: 4, publishedTerm: 3 })).toMatchObject({ ready: false, role: "starting" })
  })

  it("a standby that reaches the store is ready, whether a leader is known or the lease is free", () => {
    expect(readinessOf({ ...base, leaseTerm: 2, leader: { id: "b", term: 2 } })).toMatchObject({ ready: true, role: "standby" })
    expect(readinessOf(base)).toMatchObject({ ready: true, role: "standby" })
  })

  it("a replica whose term is still published without the lease is fenced, whatever else it sees", () => {
    expect(readinessOf({ ...base, publishedTerm: 5, leaseTerm: 5, leader: { id: "b", term: 6 } })).toMatchObject({ ready: false, role: "fenced" })
    expect(readinessOf({ ...base, publishedTerm: 5, sinceContactMillis: 10 ** 9 })).toMatchObject({ ready: false, role: "fenced" })
  })

  it("a record still naming this replica while it does not lead is fenced", () => {
    expect(readinessOf({ ...base, leader: { id: "a", term: 7 } })).toMatchObject({ ready: false, role: "fenced" })
  })

  it("a standby whose lease loop has not reached the store lately, or never, is not ready", () => {
    expect(readinessOf({ ...base, sinceContactMillis: 30_001 })).toMatchObject({ ready: false, role: "unreachable" })
    expect(readinessOf({ ...base, sinceContactMillis: undefined })).toMatchObject({ ready: false, role: "unreachable" })
    expect(readinessOf({ ...base, sinceContactMillis: 30_000, leader: { id: "b", term: 1 } })).toMatchObject({ ready: true, role: "standby" })
  })

  it("every reason is one line", () => {
    const inputs: Array<ReadinessInput> = [
      { ...base, isLeader: true, leaseTerm: 1, publishedTerm: 1 }, { ...base, isLeader: true, leaseTerm: 1 }, { ...base, publishedTerm: 1 },
      { ...base, sinceContactMillis: 99_000 }, base, { ...base, leader: { id: "b", term: 1 } }
    ]
    for (const input of inputs) expect(readinessOf(input).reason).toMatch(/^[^\n]+$/)
  })
})
