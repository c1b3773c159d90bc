import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { checkStartOptions, serverCommand, type StartFlags } from "../../src/cli/server.js"
import { parseShardConfig } from "../../src/domain/config/index.js"
import { runCommand } from "../support/cli.js"
import { runBin } from "../support/spawn.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-server-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const TOKEN = { PROXMOX_TOKEN_ID: "nstance@pve!nstance-token", PROXMOX_TOKEN_SECRET: "secret" }
/** The environment of the test run without any PROXMOX_* variable, plus `env`. */
const cleanEnv = (env: Record<string, string>): Record<string, string | undefined> => ({
  ...Object.fromEntries(Object.keys(process.env).filter((key) => key.startsWith("PROXMOX_")).map((key) => [key, undefined])),
  PROXMOX_API_URL: undefined,
  PROXMOX_TOKEN_ID: undefined,
  PROXMOX_TOKEN_SECRET: undefined,
  ...env
})
// In-process, through the same code path as the binary (the command reads PROXMOX_* from process.env, so the
// run gets only those given here); the "real process" describe starts the compiled command.
const server = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  runCommand(serverCommand, "nstance-server", args, { env: cleanEnv(env) })
const serverProcess = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("PROXMOX_")))
  return runBin("nstance-server", args, { env: { ...clean, NO_COLOR: "1", ...env } })
}
const lines = (text: string) => text.trimEnd().split("\n")

describe("nstance-server --validate", () => {
  it("accepts the single-cluster example with a summary and its warnings (exit 0)", async () => {
    const { status, stdout, stderr } = await server(["--validate", "examples/single-cluster.jsonc"])
    expect(stderr).toBe("")
    expect(status).toBe(0)
    expect(lines(stdout)).toEqual([
      "✓ Configuration is valid (examples/single-cluster.jsonc)",
      "cluster acme-prod, shard pve-a (proxmox): 3 templates, 3 tenants, 5 groups, 12 desired VMs, 0 warnings"
    ])
  })

  it.each(["many-problems", "syntax-missing-comma"])(
    "prints every problem of bad-config/%s on stderr (exit 1)",
    async (name) => {
      const file = `test/fixtures/bad-config/${name}.jsonc`
      const expected = lines(readFileSync(`test/fixtures/bad-config/${name}.expected`, "utf8"))
      const { status, stdout, stderr } = await server(["--validate", file])
      expect(status).toBe(1)
      expect(stdout).toBe("")
      expect(lines(stderr)).toEqual([
        ...expected.map((line) => `✗ ${line}`),
        `✗ ${file}: ${expected.length} problem${expected.length === 1 ? "" : "s"}; configuration is not valid`
      ])
    }
  )

  it("says in one line that a file cannot be read", async () => {
    const missing = join(dir, "missing.jsonc")
    const { status, stderr } = await server(["--validate", missing])
    expect(status).toBe(1)
    expect(lines(stderr)).toEqual([`✗ --validate ${missing}: no such file`])
  })
})

describe("nstance-server start flags", () => {
  const start = ["--storage", "file", "--bucket", dir, "--shard", "pve-a", "--id", "replica-1"]

  it("names every missing required flag (exit 1)", async () => {
    const { status, stderr } = await server(["--storage", "s3"], TOKEN)
    expect(status).toBe(1)
    expect(lines(stderr)).toEqual(["✗ missing required flags --id, --shard, --bucket"])
  })

  it("refuses to start without PROXMOX_TOKEN_SECRET, naming it", async () => {
    const { status, stderr } = await server(start, { PROXMOX_TOKEN_ID: "root@pam!t" })
    expect(status).toBe(1)
    expect(lines(stderr)).toEqual(["✗ PROXMOX_TOKEN_SECRET is not set; the proxmox provider needs the API token's secret"])
  })

  it("--help describes every flag; --version prints the version", async () => {
    const help = await server(["--help"])
    expect(help.status).toBe(0)
    for (const flag of ["--validate", "--storage", "--bucket", "--shard", "--id", "--prefix", "--cachedir", "--advertise-host", "--config", "--embedded", "--log-format"]) {
      expect(help.stdout).toContain(flag)
    }
    expect(help.stdout).toContain("PROXMOX_TOKEN_ID")
    const version = await server(["--version"])
    expect(version.status).toBe(0)
    expect(version.stdout.trim()).toBe("0.1.0")
  })
})

describe("nstance-server as a real process", () => {
  it("--validate of the example: the summary on stdout, nothing on stderr, exit 0", async () => {
    const { status, signal, stdout, stderr } = await serverProcess(["--validate", "examples/single-cluster.jsonc"])
    expect(stderr).toBe("")
    expect(signal).toBeNull()
    expect(status).toBe(0)
    expect(lines(stdout)).toEqual([
      "✓ Configuration is valid (examples/single-cluster.jsonc)",
      "cluster acme-prod, shard pve-a (proxmox): 3 templates, 3 tenants, 5 groups, 12 desired VMs, 0 warnings"
    ])
  })

  it("refuses to start without PROXMOX_TOKEN_SECRET: one line on stderr, exit 1", async () => {
    const { status, stdout, stderr } = await serverProcess(["--storage", "file", "--bucket", dir, "--shard", "pve-a", "--id", "replica-1"], { PROXMOX_TOKEN_ID: "root@pam!t" })
    expect(status).toBe(1)
    expect(stdout).toBe("")
    expect(lines(stderr)).toEqual(["✗ PROXMOX_TOKEN_SECRET is not set; the proxmox provider needs the API token's secret"])
  })
})

describe("checkStartOptions (the start checks without a process)", () => {
  const flags: StartFlags = { storage: "s3", bucket: "nstance", shard: "pve-a", id: "replica-1", cachedir: "./cache" }
  const errorsOf = (given: StartFlags, env: Record<string, string> = TOKEN, configText?: string) => {
    const config = configText === undefined ? undefined : Either.getOrThrow(parseShardConfig(configText))
    const result = checkStartOptions(given, env, config)
    return Either.isLeft(result) ? result.left : []
  }

  it("builds ServerStartOptions with the defaults", () => {
    expect(Either.getOrThrow(checkStartOptions(flags, TOKEN))).toEqual({
      storage: "s3",
      bucket: "nstance",
      shard: "pve-a",
      id: "replica-1",
      prefix: "shard/pve-a/",
      cachedir: "./cache",
      proxmox: { "pve-a": { apiUrl: "https://localhost:8006/api2/json", tokenId: TOKEN.PROXMOX_TOKEN_ID, tokenSecret: "secret" } }
    })
    expect(Either.getOrThrow(checkStartOptions({ ...flags, prefix: "prod/pve-a/", advertiseHost: "fd00::5" }, TOKEN))).toMatchObject({
      prefix: "prod/pve-a/",
      advertiseHost: "fd00::5"
    })
  })

  it.each([
    ["no flags at all", { cachedir: "./cache" }, ["missing required flags --id, --shard, --storage, --bucket"]],
    ["one missing flag", { ...flags, bucket: "" }, ["missing required flag --bucket"]],
    ["an unknown storage", { ...flags, storage: "azure" }, [`--storage must be one of s3, gcs, file (got "azure")`]],
    ["a bad shard and id", { ...flags, shard: "PVE", id: "a--b" }, [
      `--shard "PVE" must contain only lowercase alphanumeric characters and hyphens, with no leading/trailing/consecutive hyphens`,
      `--id "a--b" must contain only lowercase alphanumeric characters and hyphens, with no leading/trailing/consecutive hyphens`
    ]],
    ["an absolute prefix", { ...flags, prefix: "/shard/" }, [`--prefix must not start with "/" (got "/shard/")`]],
    ["a bad advertise host", { ...flags, advertiseHost: "bad host" }, [`--advertise-host "bad host" is not an IP address or hostname`]]
  ] as ReadonlyArray<[string, StartFlags, ReadonlyArray<string>]>)("refuses %s", (_label, given, errors) => {
    expect(errorsOf(given)).toEqual(errors)
  })

  it("refuses a bad PROXMOX_API_URL and lists every problem together", () => {
    expect(errorsOf({ ...flags, id: "" }, { PROXMOX_API_URL: "ftp://pve" })).toEqual([
      "missing required flag --id",
      "PROXMOX_API_URL must be an http(s) URL such as https://localhost:8006/api2/json (got \"ftp://pve\")",
      "PROXMOX_TOKEN_ID is not set; the proxmox provider needs an API token (user@realm!tokenid)",
      "PROXMOX_TOKEN_SECRET is not set; the proxmox provider needs the API token's secret"
    ])
  })

  it("refuses a --config of another shard, and --advertise-host over a written host", () => {
    const text = readFileSync("examples/single-cluster.jsonc", "utf8").replace(`"health_addr": ":8990"`, `"health_addr": "10.0.0.9:8990"`)
    expect(errorsOf({ ...flags, shard: "pve-b", advertiseHost: "10.0.0.5", configFile: "c.jsonc" }, TOKEN, text)).toEqual([
      `--advertise-host cannot replace shard.advertise.health_addr "10.0.0.9:8990": it already names a host`,
      `--shard "pve-b" does not match shard.id "pve-a" in c.jsonc`
    ])
    expect(errorsOf({ ...flags, advertiseHost: "10.0.0.5" }, TOKEN, readFileSync("examples/single-cluster.jsonc", "utf8"))).toEqual([])
  })
})
