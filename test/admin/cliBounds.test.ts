/**
 * What the command lines echo back is bounded and names its flag: a 10 KB `--id` was printed whole, and
 * `--size 99999999999999999999` was refused without saying which flag. And the offline `quarantine`
 * command moves only what is safe to move (see `src/layers/logQuarantine.ts`).
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { serverCommand } from "../../src/cli/server.js"
import { runCommand } from "../support/cli.js"

const lines = (text: string) => text.split("\n").filter((line) => line !== "")

describe("command-line messages", () => {
  it("a 10 KB --id is echoed cut, with its length", async () => {
    const id = "a".repeat(10_000)
    const result = await runCommand(serverCommand, "nstance-server", ["--storage", "file", "--bucket", "/nonexistent", "--shard", "pve-a", "--id", id], {
      env: { PROXMOX_TOKEN_ID: "nstance@pve!t", PROXMOX_TOKEN_SECRET: "s" }
    })
    expect(result.status).toBe(1)
    const idLine = lines(result.stderr).find((line) => line.includes("--id"))
    expect(idLine).toMatch(/^✗ --id "a+… \[cut: 10000 characters\]" /)
    expect(idLine!.length).toBeLessThan(200)
  })

  it("--size beyond what an integer holds names the flag", async () => {
    const result = await runCommand(adminCommand, "nstance-admin", ["group", "set", "shop/web", "--size", "99999999999999999999"], {
      env: { NSTANCE_ADMIN_TOKEN: "a-token-of-enough-length-0123456789" }
    })
    expect(result.status).toBe(1)
    expect(lines(result.stderr)).toEqual([`✗ --size must be an integer between -9007199254740991 and 9007199254740991 (got "99999999999999999999")`])
  })
})

describe("nstance-admin quarantine", () => {
  it("moves a garbage newest segment aside only with --yes, and refuses a valid segment or one in the middle", async () => {
    const bucket = mkdtempSync(join(tmpdir(), "nstance-quarantine-"))
    try {
      const log = join(bucket, "shard", "pve-a", "log")
      mkdirSync(log, { recursive: true })
      const segment = (seq: number) => JSON.stringify({ seq, events: [{ _tag: "LeaderElected", v: 1, term: seq, replica: "r" }] })
      writeFileSync(join(log, "0000000000000001.json"), segment(1))
      writeFileSync(join(log, "0000000000000002.json"), "garbage")
      const flags = ["--storage", "file", "--bucket", bucket, "--shard", "pve-a"]
      const run = (args: ReadonlyArray<string>) => runCommand(adminCommand, "nstance-admin", ["quarantine", ...flags, ...args])

      const valid = await run(["log/0000000000000001.json", "--yes"])
      expect(valid.status).toBe(1)
      expect(lines(valid.stderr)).toEqual([expect.stringMatching(/^✗ not quarantining log\/0000000000000001\.json: log\/0000000000000002\.json follows it/)])

      const dry = await run(["log/0000000000000002.json"])
      expect(dry.status).toBe(0)
      expect(dry.stdout).toMatch(/^would move log\/0000000000000002\.json \(.*not valid JSON.*\) to quarantine\/log\/0000000000000002\.json\.\d{8}T\d{6}Z; run again with --yes/)
      expect(readdirSync(log).sort()).toEqual(["0000000000000001.json", "0000000000000002.json"])

      const done = await run(["log/0000000000000002.json", "--yes"])
      expect(done.status).toBe(0)
      expect(readdirSync(log)).toEqual(["0000000000000001.json"])
      expect(readdirSync(join(bucket, "shard", "pve-a", "quarantine", "log"))).toHaveLength(1)

      const last = await run(["log/0000000000000001.json", "--yes"])
      expect(lines(last.stderr)).toEqual([expect.stringMatching(/^✗ not quarantining log\/0000000000000001\.json: it is a valid segment \(1 events\)/)])
    } finally {
      rmSync(bucket, { recursive: true, force: true })
    }
  })
})
