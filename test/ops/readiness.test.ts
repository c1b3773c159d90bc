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

  it("an invalid config object leaves readiness as the lease says, and the reason names it in one bounded line", () => {
    const configHeld = [{ object: "groups.jsonc", problem: "line 1, column 3: expected ','\nand a second line" }]
    expect(readinessOf({ ...base, isLeader: true, leaseTerm: 2, publishedTerm: 2, configHeld })).toEqual({
      ready: true,
      role: "leader",
      reason: "leader of term 2; groups.jsonc invalid, the last good config stays in force: line 1, column 3: expected ',' and a second line"
    })
    const both = [{ object: "config.jsonc", problem: "shard.id: is required" }, { object: "groups.jsonc", problem: "x".repeat(5000) }]
    const starting = readinessOf({ ...base, isLeader: true, leaseTerm: 2, configHeld: both })
    expect(starting).toMatchObject({ ready: false, role: "starting" })
    expect(starting.reason).toMatch(/^leader of term 2, still starting \(.*\); config\.jsonc and groups\.jsonc invalid, the last good config stays in force: shard\.id: is required; x+… \[cut: 5000 characters\]$/)
    expect(starting.reason.length).toBeLessThan(700)
  })

  it("a new log holding its work beside another log's VMs stays ready as a leader, and the reason says it holds and why", () => {
    const hold = "this shard's event log logA is new, but 3 VMs with this shard's tags belong to another log: logB (VMs 9101, 9102, 9103); …"
    const configHeld = [{ object: "groups.jsonc", problem: "line 1" }]
    const readiness = readinessOf({ ...base, isLeader: true, leaseTerm: 1, publishedTerm: 1, ownershipHold: hold, configHeld })
    expect(readiness).toMatchObject({ ready: true, role: "leader" })
    expect(readiness.reason).toBe(`leader of term 1; holding: ${hold}; groups.jsonc invalid, the last good config stays in force: line 1`)
  })

  it("a replica whose last term ended on a corrupt log is not ready and names the object, until a newer leader is seen", () => {
    const logProblem = { term: 4, key: "log/0000000000000042.json", reason: "not a valid segment (not JSON)\nsecond line" }
    for (const input of [{ ...base, logProblem }, { ...base, logProblem, leader: { id: "b", term: 4 } }, { ...base, logProblem, sinceContactMillis: 10 ** 9 }]) {
      const readiness = readinessOf(input)
      expect(readiness).toMatchObject({ ready: false, role: "log-corrupt" })
      expect(readiness.reason).toMatch(/^event log corrupt at log\/0000000000000042\.json: not a valid segment \(not JSON\) second line \(term 4 ended on it/)
    }
    // Someone else leads a newer term: the log replayed there, so this replica is a standby like any other.
    expect(readinessOf({ ...base, logProblem, leader: { id: "b", term: 5 } })).toMatchObject({ ready: true, role: "standby" })
    // A leader with a started term is ready whatever an earlier term met.
    expect(readinessOf({ ...base, logProblem, isLeader: true, leaseTerm: 6, publishedTerm: 6 })).toMatchObject({ ready: true, role: "leader" })
  })

  it("every reason is one line", () => {
    const inputs: Array<ReadinessInput> = [
      { ...base, isLeader: true, leaseTerm: 1, publishedTerm: 1 }, { ...base, isLeader: true, leaseTerm: 1 }, { ...base, publishedTerm: 1 },
      { ...base, sinceContactMillis: 99_000 }, base, { ...base, leader: { id: "b", term: 1 } }
    ]
    for (const input of inputs) expect(readinessOf(input).reason).toMatch(/^[^\n]+$/)
  })
})
