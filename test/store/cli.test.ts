import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { jsoncProblem, lineColumn } from "../../src/cli/adminConfig.js"
import { makeS3Store } from "../../src/layers/ObjectStoreS3.js"
import { closedPort, s3ChildEnv, s3TestEnv } from "./s3Env.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-config-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Runs the CLI without blocking the worker (a sync spawn of several seconds starves vitest's RPC). */
const admin = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1" }) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ["bin/nstance-admin.js", ...args], { env, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("error", reject)
    child.on("close", (status) => resolve({ status, stdout, stderr }))
  })

const CONFIG = `// shard config
{
  "groups": { "web": { "size": 3, }, }, // trailing commas are JSONC
}
`
const configFile = join(dir, "config.jsonc")
writeFileSync(configFile, CONFIG)

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

// Each case starts Node processes; on a loaded two-core machine one start can take 10 s or more.
const slow = { timeout: 240_000 }

describe("nstance-admin config with --storage file", slow, () => {
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
  })

  it("--prefix replaces shard/{shard}/; pull -o writes a file and prints the etag that --if-match accepts", async () => {
    expect((await admin(["config", "push", configFile, "--storage", "file", "--bucket", bucket, "--shard", "x", "--prefix", "custom/"])).status).toBe(0)
    expect(existsSync(join(bucket, "custom", "config.jsonc"))).toBe(true)
    const out = join(dir, "pulled.jsonc")
    const pulled = await admin(["config", "pull", "--storage", "file", "--bucket", bucket, "--shard", "x", "--prefix", "custom/", "-o", out])
    expect(pulled.status).toBe(0)
    expect(readFileSync(out, "utf8")).toBe(CONFIG)
    const etag = /\(etag (\S+)\)/.exec(pulled.stdout)?.[1]
    expect(etag).toBeDefined()
    const changed = join(dir, "changed.jsonc")
    writeFileSync(changed, '{ "groups": {} }\n')
    const ok = await admin(["config", "push", changed, "--storage", "file", "--bucket", bucket, "--shard", "x", "--prefix", "custom/", "--if-match", etag!])
    expect(ok.stderr).toBe("")
    expect(ok.status).toBe(0)
    const stale = await admin(["config", "push", configFile, "--storage", "file", "--bucket", bucket, "--shard", "x", "--prefix", "custom/", "--if-match", etag!])
    expect(stale.status).toBe(1)
    expect(stale.stderr.trim()).toBe(`✗ object changed since etag ${etag}: custom/config.jsonc`)
    expect(readFileSync(join(bucket, "custom", "config.jsonc"), "utf8")).toBe('{ "groups": {} }\n')
  })

  it("refuses a file that is not JSONC, naming line:column, and uploads nothing", async () => {
    const bad = join(dir, "bad.jsonc")
    writeFileSync(bad, '{\n  "groups": {\n    "web" { }\n  }\n}\n')
    const result = await admin(["config", "push", bad, "--storage", "file", "--bucket", bucket, "--shard", "bad"])
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe(`✗ ${bad}:3:11: ColonExpected (not valid JSONC); nothing uploaded`)
    expect(existsSync(join(bucket, "shard", "bad"))).toBe(false)
  })

  it("a missing FILE and a missing config are one clear line each", async () => {
    const missing = await admin(["config", "push", join(dir, "nope.jsonc"), "--storage", "file", "--bucket", bucket, "--shard", "eu-1"])
    expect(missing.status).toBe(1)
    expect(missing.stderr.trim().split("\n")).toHaveLength(1)
    expect(missing.stderr).toContain("cannot read")
    const pulled = await admin(["config", "pull", "--storage", "file", "--bucket", bucket, "--shard", "nobody"])
    expect(pulled.status).toBe(1)
    expect(pulled.stderr.trim()).toMatch(/^✗ no config at file:\/\/.*\/shard\/nobody\/config\.jsonc$/)
  })

  it("--help describes every flag", async () => {
    const help = await admin(["config", "push", "--help"])
    for (const flag of ["--storage", "--bucket", "--shard", "--prefix", "--if-match"]) expect(help.stdout).toContain(flag)
    expect(help.stdout).toContain("well-formed JSONC")
    expect((await admin(["config", "pull", "--help"])).stdout).toContain("--output")
  })
})

const env = s3TestEnv()
if (typeof env === "string") console.warn(`\n⚠ SKIPPING nstance-admin config tests against a real S3 server: ${env}\n`)

describe.skipIf(typeof env === "string")("nstance-admin config against the real S3 server", slow, () => {
  const s3 = typeof env === "string" ? undefined : env
  const shard = `cli-${randomUUID()}`
  afterAll(async () => {
    const store = makeS3Store({ bucket: s3!.bucket, endpoint: s3!.endpoint, region: s3!.region, forcePathStyle: true, credentials: s3! })
    await Effect.runPromise(Effect.ignore(store.delete(`shard/${shard}/config.jsonc`)))
  })

  it("push then pull round-trips through S3", async () => {
    const pushed = await admin(["config", "push", configFile, "--storage", "s3", "--bucket", s3!.bucket, "--shard", shard], s3ChildEnv(s3!))
    expect(pushed.stderr).toBe("")
    expect(pushed.stdout).toMatch(new RegExp(`^pushed .* to s3://${s3!.bucket}/shard/${shard}/config\\.jsonc \\(etag [0-9a-f]{32}\\)\\n$`))
    const pulled = await admin(["config", "pull", "--storage", "s3", "--bucket", s3!.bucket, "--shard", shard], s3ChildEnv(s3!))
    expect(pulled.stdout).toBe(CONFIG)
  })

  it("wrong credentials: one line saying the credentials were rejected", async () => {
    const result = await admin(
      ["config", "push", configFile, "--storage", "s3", "--bucket", s3!.bucket, "--shard", shard],
      s3ChildEnv(s3!, { AWS_ACCESS_KEY_ID: "nobody", AWS_SECRET_ACCESS_KEY: "wrong-secret-000000" })
    )
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe(`✗ object store refused put shard/${shard}/config.jsonc: credentials rejected (InvalidAccessKeyId)`)
  })

  it("a missing bucket: one line naming the bucket", async () => {
    const result = await admin(["config", "push", configFile, "--storage", "s3", "--bucket", "nstance-missing-bucket", "--shard", shard], s3ChildEnv(s3!))
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe(`✗ object store refused put shard/${shard}/config.jsonc: bucket "nstance-missing-bucket" does not exist`)
  })
})

describe("nstance-admin config against an unreachable S3 endpoint", slow, () => {
  it("a closed loopback port: one line saying the endpoint cannot be reached", async () => {
    const port = await closedPort()
    const result = await admin(["config", "push", configFile, "--storage", "s3", "--bucket", "b", "--shard", "s"], {
      ...process.env,
      NO_COLOR: "1",
      AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
      AWS_S3_USE_PATH_STYLE: "true",
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "a",
      AWS_SECRET_ACCESS_KEY: "b"
    })
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe(`✗ object store unavailable (put shard/s/config.jsonc): cannot reach http://127.0.0.1:${port} (ECONNREFUSED)`)
  })
})
