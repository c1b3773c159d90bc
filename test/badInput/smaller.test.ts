/**
 * Issue 16, the smaller cases: `npm start` leaves no temporary bucket behind, a truncated config is one
 * problem, sizes are bounded, `config pull -o DIR` names the directory, the simulator names the variable
 * a bad token id came from, and the AWS SDK's Node-version notice does not reach the operator.
 */
import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { runBin } from "../support/spawn.js"
import { admin, closedPort, filesUnder, lines, scratch, server, sim } from "./support.js"

const dir = scratch("smaller")

describe("npm start (--embedded)", () => {
  it("removes its temporary bucket when it stops", async () => {
    const result = await server(["--embedded"], {}, { interruptAfterMs: 4_000 })
    expect(result.status).toBe(0)
    const bucket = /object store : file:\/\/(\S+) /.exec(result.stdout)?.[1]
    expect(bucket).toMatch(/nstance-embedded-/)
    expect(existsSync(bucket ?? "")).toBe(false)
  })
})

describe("config problems", () => {
  // Each row: fixture, the lines --validate prints on stderr.
  const rows: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
    ["syntax-truncated", ["✗ line 23, column 1: unexpected end of file; expected '}'"]],
    ["group-size-huge", ["✗ groups.default.web.size: must be at most 10000 (got 1000000000000)"]]
  ]
  it.each(rows)("%s", async (name, expected) => {
    const file = `test/fixtures/bad-config/${name}.jsonc`
    const result = await server(["--validate", file])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(lines(result.stderr)).toEqual([...expected, `✗ ${file}: 1 problem; configuration is not valid`])
  })
})

describe("config pull -o", () => {
  const bucket = join(dir, "bucket")
  const target = join(dir, "a-directory")
  mkdirSync(target)

  it.each([
    ["a directory", target, `✗ -o ${target}: is a directory`],
    ["a file in a missing directory", join(dir, "missing", "config.jsonc"), `✗ -o ${join(dir, "missing", "config.jsonc")}: cannot write (its directory does not exist)`]
  ])("into %s: one line naming -o, nothing written", async (_name, output, line) => {
    expect((await admin(["config", "push", "examples/single-cluster.jsonc", "--storage", "file", "--bucket", bucket, "--shard", "pve-a"])).status).toBe(0)
    const result = await admin(["config", "pull", "--storage", "file", "--bucket", bucket, "--shard", "pve-a", "-o", output])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr).toBe(`${line}\n`)
    expect(filesUnder(target)).toEqual([])
  })
})

describe("nstance-pve-sim names where a bad token id came from", () => {
  it.each([
    ["the environment", [], { PROXMOX_TOKEN_ID: "root" }, `✗ PROXMOX_TOKEN_ID "root" is not of the form user@realm!token`],
    ["the flag", ["--token-id", "root"], { PROXMOX_TOKEN_ID: "a@pve!b" }, `✗ --token-id "root" is not of the form user@realm!token`]
  ] as const)("from %s", async (_name, args, env, line) => {
    const result = await sim([...args, "--port", "0"], env)
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr).toBe(`${line}\n`)
  })
})

describe("the AWS SDK's Node-version notice", () => {
  // Node 20 gets the notice from the SDK version in the lockfile; newer Nodes would pass regardless.
  it("does not reach the operator: an unreachable S3 endpoint is one line", async () => {
    const port = await closedPort()
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("AWS_")))
    const result = await runBin("nstance-admin", ["config", "pull", "--storage", "s3", "--bucket", "b", "--shard", "s"], {
      env: {
        ...env,
        NO_COLOR: "1",
        AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
        AWS_ACCESS_KEY_ID: "a",
        AWS_SECRET_ACCESS_KEY: "b",
        AWS_REGION: "us-east-1"
      }
    })
    expect(result.status).toBe(1)
    expect(result.stderr).not.toContain("NodeVersionSupportWarning")
    expect(lines(result.stderr)).toEqual([`✗ object store unavailable (get shard/s/config.jsonc): cannot reach http://127.0.0.1:${port} (ECONNREFUSED)`])
  })
})
