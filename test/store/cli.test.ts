import { randomUUID } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { jsoncProblem, lineColumn } from "../../src/cli/adminConfig.js"
import { formatProblem, parseShardConfig } from "../../src/domain/config/index.js"
import { makeS3Store } from "../../src/layers/ObjectStoreS3.js"
import { runCommand } from "../support/cli.js"
import { runBin } from "../support/spawn.js"
import { closedPort, S3_START_TIMEOUT_MS, type S3TestEnv, s3TestEnv, s3Vars, skipWithout } from "./s3Env.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-config-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** `nstance-admin …` in-process, through the same code path as the binary; `env` is applied while it runs. */
const admin = (args: ReadonlyArray<string>, env: Readonly<Record<string, string | undefined>> = {}) =>
  runCommand(adminCommand, "nstance-admin", args, { env })

/** A shard config of shard `id` that nstance-server --validate accepts, with a comment and trailing commas (JSONC). */
const configFor = (id: string) => `// shard config
{
  "cluster": { "id": "acme" },
  "shard": {
    "id": ${JSON.stringify(id)},
    "infra": { "provider": "proxmox", "region": "dc1", "zone": "a" },
    "bind": { "health_addr": "0.0.0.0:8990", "election_addr": "0.0.0.0:8991", "registration_addr": "0.0.0.0:8992", "operator_addr": "0.0.0.0:8993", "agent_addr": "0.0.0.0:8994" },
    "advertise": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": "10.0.0.1:8992", "operator_addr": "10.0.0.1:8993", "agent_addr": "10.0.0.1:8994" },
    "subnet_pools": { "default": ["vmbr0"] },
  },
  "templates": { "web": { "kind": "web", "instance_type": "cpu:2,memory:2048", "subnet_pool": "default", "args": { "TemplateName": "debian-13-template", "StoragePool": "local-lvm" } } },
  "groups": { "default": { "web": { "template": "web", "size": 3, }, }, }, // trailing commas are JSONC
}
`
/** Writes `text` to a file in the test directory; its path. */
const file = (name: string, text: string) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}
const CONFIG = configFor("eu-1")
const configFile = file("config.jsonc", CONFIG)

describe("jsoncProblem", () => {
  it.each([
    ["{}", undefined],
    [CONFIG, undefined],
    ["", "1:1: ValueExpected"],
    ['{\n  "a" 1\n}', "2:7: ColonExpected"],
    ['{\n  "a": 1\n  "b": 2\n}', "3:3: CommaExpected"],
    ["{ /* unterminated", "1:3: UnexpectedEndOfComment"]
  ])("%j → %s", (text, expected) => {
    expect(jsoncProblem(text)).toBe(expected)
  })

  it("counts lines and columns from 1", async () => {
    expect(lineColumn("ab\ncd", 4)).toEqual({ line: 2, column: 2 })
    expect(lineColumn("ab", 0)).toEqual({ line: 1, column: 1 })
  })
})

describe("the test config", () => {
  it("is a valid shard config of the shard it names, without warnings", () => {
    for (const id of ["eu-1", "x", "cli-0123abcd"]) {
      const parsed = parseShardConfig(configFor(id))
      if (Either.isLeft(parsed)) throw new Error(parsed.left.problems.map(formatProblem).join("\n"))
      expect(parsed.right.config.shard.id).toBe(id)
      expect(parsed.right.warnings).toEqual([])
    }
  })
})

describe("nstance-admin config with --storage file", () => {
  const bucket = join(dir, "bucket")

  it("push writes shard/{shard}/config.jsonc byte for byte; pull prints it back", async () => {
    const pushed = await admin(["config", "push", configFile, "--storage", "file", "--bucket", bucket, "--shard", "eu-1"])
    expect(pushed.stderr).toBe("")
    expect(pushed.status).toBe(0)
    expect(pushed.stdout).toMatch(/^pushed .*config\.jsonc to file:\/\/.*\/shard\/eu-1\/config\.jsonc \(etag [0-9a-f]{32}\)\n$/)
    expect(readFileSync(join(bucket, "shard", "eu-1", "config.jsonc"), "utf8")).toBe(CONFIG)
    const pulled = await admin(["config", "pull", "--storage", "file", "--bucket", bucket, "--shard", "eu-1"])
    expect(pulled.status).toBe(0)
    expect(pulled.stdout).toBe(CONFIG)
    expect(pulled.stdoutBytes).toEqual(new Uint8Array(Buffer.from(CONFIG)))
  })

  it("--prefix replaces shard/{shard}/; pull -o writes a file and prints the etag that --if-match accepts", async () => {
    const xConfig = configFor("x")
    const xFile = file("x.jsonc", xConfig)
    const first = await admin(["config", "push", xFile, "--storage", "file", "--bucket", bucket, "--shard", "x", "--prefix", "custom/"])
    expect(first.stderr).toBe("")
    expect(first.status).toBe(0)
    expect(readFileSync(join(bucket, "custom", "config.jsonc"), "utf8")).toBe(xConfig)
    const out = join(dir, "pulled.jsonc")
    const pulled = await admin(["config", "pull", "--storage", "file", "--bucket", bucket, "--shard", "x", "--prefix", "custom/", "-o", out])
    expect(pulled.status).toBe(0)
    expect(readFileSync(out, "utf8")).toBe(xConfig)
    const etag = /\(etag (\S+)\)/.exec(pulled.stdout)?.[1]
    expect(etag).toBeDefined()
    // Not a valid shard config: --force, as this case is about the store's etags, not about validation.
    const changed = file("changed.jsonc", '{ "groups": {} }\n')
    const ok = await admin(["config", "push", changed, "--storage", "file", "--bucket", bucket, "--shard", "x", "--prefix", "custom/", "--if-match", etag!, "--force"])
    expect(ok.stderr).toBe("")
    expect(ok.status).toBe(0)
    const stale = await admin(["config", "push", xFile, "--storage", "file", "--bucket", bucket, "--shard", "x", "--prefix", "custom/", "--if-match", etag!])
    expect(stale.status).toBe(1)
    expect(stale.stderr.trim()).toBe(`✗ object changed since etag ${etag}: custom/config.jsonc`)
    expect(readFileSync(join(bucket, "custom", "config.jsonc"), "utf8")).toBe('{ "groups": {} }\n')
  })

  it("refuses a file that is not JSONC, naming line and column, and uploads nothing, even with --force", async () => {
    const bad = file("bad.jsonc", '{\n  "groups": {\n    "web" { }\n  }\n}\n')
    const result = await admin(["config", "push", bad, "--storage", "file", "--bucket", bucket, "--shard", "bad"])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    // The parser's recovery closes the root object at line 4, so the last "}" is a second problem.
    const syntax = ["✗ line 3, column 11: expected ':'", "✗ line 5, column 1: expected end of file"]
    expect(result.stderr.trimEnd().split("\n")).toEqual([...syntax, `✗ ${bad}: 2 problems; nothing uploaded (see nstance-server --validate)`])
    const forced = await admin(["config", "push", bad, "--storage", "file", "--bucket", bucket, "--shard", "bad", "--force"])
    expect(forced.status).toBe(1)
    expect(forced.stderr.trimEnd().split("\n")).toEqual([...syntax, `✗ ${bad}: 2 problems; nothing uploaded`])
    expect(existsSync(join(bucket, "shard", "bad"))).toBe(false)
  })

  it("refuses a config that nstance-server --validate refuses, listing its problems; --force uploads it", async () => {
    const invalid = configFor("eu-9").replace('"size": 3', '"size": -1')
    const path = file("invalid.jsonc", invalid)
    const refused = await admin(["config", "push", path, "--storage", "file", "--bucket", bucket, "--shard", "eu-9"])
    expect(refused.status).toBe(1)
    expect(refused.stdout).toBe("")
    expect(refused.stderr.trimEnd().split("\n")).toEqual([
      "✗ groups.default.web.size: must be a non-negative integer",
      `✗ ${path}: 1 problem; nothing uploaded (see nstance-server --validate)`
    ])
    expect(existsSync(join(bucket, "shard", "eu-9"))).toBe(false)
    const forced = await admin(["config", "push", path, "--storage", "file", "--bucket", bucket, "--shard", "eu-9", "--force"])
    expect(forced.stderr).toBe("")
    expect(forced.status).toBe(0)
    expect(forced.stdout).toMatch(/^pushed .*invalid\.jsonc to file:\/\/.*\/shard\/eu-9\/config\.jsonc \(etag [0-9a-f]{32}\)\n$/)
    expect(readFileSync(join(bucket, "shard", "eu-9", "config.jsonc"), "utf8")).toBe(invalid)
  })

  it("refuses a config whose shard.id is not --shard, even with --force", async () => {
    const mismatch = `✗ shard.id: "eu-1" does not match --shard "eu-2"; a server of shard eu-2 would refuse it`
    const refused = await admin(["config", "push", configFile, "--storage", "file", "--bucket", bucket, "--shard", "eu-2"])
    expect(refused.status).toBe(1)
    expect(refused.stdout).toBe("")
    expect(refused.stderr.trimEnd().split("\n")).toEqual([mismatch, `✗ ${configFile}: 1 problem; nothing uploaded (see nstance-server --validate)`])
    const forced = await admin(["config", "push", configFile, "--storage", "file", "--bucket", bucket, "--shard", "eu-2", "--force"])
    expect(forced.status).toBe(1)
    expect(forced.stdout).toBe("")
    expect(forced.stderr.trimEnd().split("\n")).toEqual([mismatch, `✗ ${configFile}: 1 problem; nothing uploaded`])
    expect(existsSync(join(bucket, "shard", "eu-2"))).toBe(false)
  })

  it("a missing FILE and a missing config are one clear line each", async () => {
    const nope = join(dir, "nope.jsonc")
    const missing = await admin(["config", "push", nope, "--storage", "file", "--bucket", bucket, "--shard", "eu-1"])
    expect(missing.status).toBe(1)
    expect(missing.stderr.trimEnd()).toBe(`✗ ${nope}: no such file`)
    const pulled = await admin(["config", "pull", "--storage", "file", "--bucket", bucket, "--shard", "nobody"])
    expect(pulled.status).toBe(1)
    expect(pulled.stderr.trim()).toMatch(/^✗ no config at file:\/\/.*\/shard\/nobody\/config\.jsonc$/)
  })

  it("--help describes every flag", async () => {
    const help = await admin(["config", "push", "--help"])
    for (const flag of ["--storage", "--bucket", "--shard", "--prefix", "--if-match", "--force"]) expect(help.stdout).toContain(flag)
    expect(help.stdout).toContain("well-formed JSONC")
    expect((await admin(["config", "pull", "--help"])).stdout).toContain("--output")
  })
})

// The wire, once each way: the compiled binary as an operator runs it (exit status, real stdout bytes, stderr).
describe("nstance-admin config as a real process", () => {
  const bucket = join(dir, "wire-bucket")

  it("push exits 0 and stores the bytes; pull writes them to the process's stdout", async () => {
    const pushed = await runBin("nstance-admin", ["config", "push", configFile, "--storage", "file", "--bucket", bucket, "--shard", "eu-1"])
    expect(pushed.stderr).toBe("")
    expect(pushed.status).toBe(0)
    expect(pushed.stdout).toMatch(/^pushed .*config\.jsonc to file:\/\/.*\/shard\/eu-1\/config\.jsonc \(etag [0-9a-f]{32}\)\n$/)
    expect(readFileSync(join(bucket, "shard", "eu-1", "config.jsonc"), "utf8")).toBe(CONFIG)
    const pulled = await runBin("nstance-admin", ["config", "pull", "--storage", "file", "--bucket", bucket, "--shard", "eu-1"])
    expect(pulled.stderr).toBe("")
    expect(pulled.status).toBe(0)
    expect(pulled.stdout).toBe(CONFIG)
  })

  it("a failure exits 1 with one line on stderr and nothing on stdout", async () => {
    const pulled = await runBin("nstance-admin", ["config", "pull", "--storage", "file", "--bucket", bucket, "--shard", "nobody"])
    expect(pulled.status).toBe(1)
    expect(pulled.stdout).toBe("")
    expect(pulled.stderr.trim()).toMatch(/^✗ no config at file:\/\/.*\/shard\/nobody\/config\.jsonc$/)
  })
})

// No skip: without a reachable S3 server these tests fail, saying why (see s3Env.ts).
describe.skipIf(skipWithout("s3"))("nstance-admin config against the real S3 server", () => {
  let s3: S3TestEnv
  // A shard ID is at most 32 characters: a short unique one per run, and a config that names it.
  const shard = `cli-${randomUUID().slice(0, 8)}`
  const s3Config = configFor(shard)
  const s3ConfigFile = file(`${shard}.jsonc`, s3Config)
  beforeAll(async () => {
    s3 = await s3TestEnv()
  }, S3_START_TIMEOUT_MS)
  afterAll(async () => {
    if (s3 === undefined) return
    const store = makeS3Store({ bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: s3 })
    await Effect.runPromise(Effect.ignore(store.delete(`shard/${shard}/config.jsonc`)))
  })

  it("push then pull round-trips through S3", async () => {
    const pushed = await admin(["config", "push", s3ConfigFile, "--storage", "s3", "--bucket", s3.bucket, "--shard", shard], s3Vars(s3))
    expect(pushed.stderr).toBe("")
    expect(pushed.status).toBe(0)
    expect(pushed.stdout).toMatch(new RegExp(`^pushed .* to s3://${s3.bucket}/shard/${shard}/config\\.jsonc \\(etag [0-9a-f]{32}\\)\\n$`))
    const pulled = await admin(["config", "pull", "--storage", "s3", "--bucket", s3.bucket, "--shard", shard], s3Vars(s3))
    expect(pulled.stderr).toBe("")
    expect(pulled.status).toBe(0)
    expect(pulled.stdout).toBe(s3Config)
  })

  it("wrong credentials: one line saying the credentials were rejected", async () => {
    const result = await admin(
      ["config", "push", s3ConfigFile, "--storage", "s3", "--bucket", s3.bucket, "--shard", shard],
      s3Vars(s3, { AWS_ACCESS_KEY_ID: "nobody", AWS_SECRET_ACCESS_KEY: "wrong-secret-000000" })
    )
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe(`✗ object store refused put shard/${shard}/config.jsonc: credentials rejected (InvalidAccessKeyId)`)
  })

  it("a missing bucket: one line naming the bucket", async () => {
    const result = await admin(["config", "push", s3ConfigFile, "--storage", "s3", "--bucket", "nstance-missing-bucket", "--shard", shard], s3Vars(s3))
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe(`✗ object store refused put shard/${shard}/config.jsonc: bucket "nstance-missing-bucket" does not exist`)
  })
})

describe("nstance-admin config against an unreachable S3 endpoint", () => {
  it("a closed loopback port: one line saying the endpoint cannot be reached", async () => {
    const port = await closedPort()
    const result = await admin(["config", "push", file("s.jsonc", configFor("s")), "--storage", "s3", "--bucket", "b", "--shard", "s"], {
      AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
      AWS_ENDPOINT_URL_S3: undefined,
      AWS_S3_USE_PATH_STYLE: "true",
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "a",
      AWS_SECRET_ACCESS_KEY: "b"
    })
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe(`✗ object store unavailable (put shard/s/config.jsonc): cannot reach http://127.0.0.1:${port} (ECONNREFUSED)`)
  })
})
