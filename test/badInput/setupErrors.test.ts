/**
 * Issue 28, weak class "setup errors retried forever": a token secret that cannot go into an HTTP header, a
 * `PROXMOX_API_URL` with `..`, a query or a fragment, and a malformed `AWS_ENDPOINT_URL` used to start the
 * daemon, which then failed every call and retried (the S3 one as "object store unavailable …
 * ERR_INVALID_URL", naming no variable). Each now refuses the start with one line naming the variable, before
 * anything touches the bucket.
 */
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { serverCommand } from "../../src/cli/server.js"
import { runCommand } from "../support/cli.js"
import { runBin } from "../support/spawn.js"
import { admin, filesUnder, lines, scratch, TOKEN, withoutProxmox } from "./support.js"

const dir = scratch("setup")
const bucket = join(dir, "bucket")
const fileStart = ["--storage", "file", "--bucket", bucket, "--shard", "pve-a", "--id", "r1"]
const s3Start = ["--storage", "s3", "--bucket", "nstance", "--shard", "pve-a", "--id", "r1"]
/** The run's own S3 settings (the S3 suites' server) must not decide these cases. */
const noAws = { AWS_ENDPOINT_URL: undefined, AWS_ENDPOINT_URL_S3: undefined }

/** The server in-process with only `env`'s PROXMOX_* and AWS endpoint variables. */
const server = (args: ReadonlyArray<string>, env: Readonly<Record<string, string | undefined>>) =>
  runCommand(serverCommand, "nstance-server", args, { env: { ...withoutProxmox(), ...noAws, ...env } })

const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, Readonly<Record<string, string | undefined>>, string]> = [
  ["a token secret with a line break", fileStart, { ...TOKEN, PROXMOX_TOKEN_SECRET: "5e1f7c2a-3b4d\n4e6f-8a9b" },
    "✗ PROXMOX_TOKEN_SECRET contains a line break at character 14; it cannot be sent in an HTTP header (check how the secret was pasted or read)"],
  ["a token secret with a carriage return", fileStart, { ...TOKEN, PROXMOX_TOKEN_SECRET: "abc\rX-Injected: 1" },
    "✗ PROXMOX_TOKEN_SECRET contains a line break at character 4; it cannot be sent in an HTTP header (check how the secret was pasted or read)"],
  ["a token secret with a space", fileStart, { ...TOKEN, PROXMOX_TOKEN_SECRET: "abc def" },
    "✗ PROXMOX_TOKEN_SECRET contains a space at character 4; it cannot be sent in an HTTP header (check how the secret was pasted or read)"],
  ["a token id with a control character", fileStart, { ...TOKEN, PROXMOX_TOKEN_ID: "nstance@pve!tok\u0001en" },
    "✗ PROXMOX_TOKEN_ID contains a control character at character 16; it cannot be sent in an HTTP header"],
  ["an API URL with '..'", fileStart, { ...TOKEN, PROXMOX_API_URL: "https://pve:8006/api2/../json" },
    `✗ PROXMOX_API_URL must not contain "." or ".." path segments (got "https://pve:8006/api2/../json")`],
  ["an API URL with an encoded '..'", fileStart, { ...TOKEN, PROXMOX_API_URL: "https://pve:8006/%2e%2e/api2/json" },
    `✗ PROXMOX_API_URL must not contain "." or ".." path segments (got "https://pve:8006/%2e%2e/api2/json")`],
  ["an API URL with a query", fileStart, { ...TOKEN, PROXMOX_API_URL: "https://pve:8006/api2/json?node=pve1" },
    `✗ PROXMOX_API_URL must not contain a query ("?…"): request paths are appended to it (got "https://pve:8006/api2/json?node=pve1")`],
  ["an API URL with a fragment", fileStart, { ...TOKEN, PROXMOX_API_URL: "https://pve:8006/api2/json#x" },
    `✗ PROXMOX_API_URL must not contain a fragment ("#…"): request paths are appended to it (got "https://pve:8006/api2/json#x")`],
  ["an API URL with credentials", fileStart, { ...TOKEN, PROXMOX_API_URL: "https://root:hunter2@pve:8006/api2/json" },
    `✗ PROXMOX_API_URL must not carry a user name or password (the credentials have their own variables) (got "https://…@pve:8006/api2/json")`],
  ["an API URL with a line break", fileStart, { ...TOKEN, PROXMOX_API_URL: "https://pve:8006/api2\n/json" },
    `✗ PROXMOX_API_URL contains a line break at character 22; set it to one URL on one line (got "https://pve:8006/api2\\n/json")`],
  ["an S3 endpoint that is not a URL", s3Start, { ...TOKEN, AWS_ENDPOINT_URL: "seaweed:8333:x" },
    `✗ AWS_ENDPOINT_URL must be an http(s) URL such as http://127.0.0.1:8333 (got "seaweed:8333:x")`],
  ["an S3 endpoint with a bad port", s3Start, { ...TOKEN, AWS_ENDPOINT_URL: "http://127.0.0.1:99999" },
    `✗ AWS_ENDPOINT_URL must be an http(s) URL such as http://127.0.0.1:8333 (got "http://127.0.0.1:99999")`],
  ["an S3 endpoint with a query (the S3-specific variable wins)", s3Start, { ...TOKEN, AWS_ENDPOINT_URL: "http://ok:8333", AWS_ENDPOINT_URL_S3: "http://s3:8333/?x=1" },
    `✗ AWS_ENDPOINT_URL_S3 must not contain a query ("?…"): request paths are appended to it (got "http://s3:8333/?x=1")`]
]

describe("setup errors refuse the start with one line naming the variable", () => {
  it.each(cases)("%s", async (_name, args, env, line) => {
    const result = await server(args, env)
    expect(lines(result.stderr)).toEqual([line])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(filesUnder(bucket)).toEqual([])
  })

  it("the secret itself is never echoed", async () => {
    const result = await server(fileStart, { ...TOKEN, PROXMOX_TOKEN_SECRET: "very-secret\nvalue" })
    expect(result.stderr).not.toContain("very-secret")
  })

  it("what the URL parser would do with '..' (why it is checked on the text): another path, silently", () => {
    expect(new URL("https://pve:8006/api2/../json").pathname).toBe("/json")
  })

  it("nstance-server --validate against the bucket refuses a malformed S3 endpoint the same way", async () => {
    const result = await server(["--validate", "--storage", "s3", "--bucket", "b", "--shard", "pve-a"], { AWS_ENDPOINT_URL: "not a url" })
    expect(lines(result.stderr)).toEqual([`✗ AWS_ENDPOINT_URL contains a space; set it to one URL such as http://127.0.0.1:8333 (got "not a url")`])
    expect(result.status).toBe(1)
  })

  it("nstance-admin's S3 store names the variable at once instead of 'unavailable … ERR_INVALID_URL'", async () => {
    const result = await admin(["config", "pull", "--storage", "s3", "--bucket", "b", "--shard", "s"], {
      env: { ...noAws, AWS_ENDPOINT_URL: "http://127.0.0.1:99999", AWS_ACCESS_KEY_ID: "a", AWS_SECRET_ACCESS_KEY: "b", AWS_REGION: "us-east-1" }
    })
    expect(lines(result.stderr)).toEqual([
      `✗ object store refused get shard/s/config.jsonc: AWS_ENDPOINT_URL must be an http(s) URL such as http://127.0.0.1:8333 (got "http://127.0.0.1:99999")`
    ])
    expect(result.status).toBe(1)
  })

  it("the compiled server: one line and exit 1, at once", async () => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("AWS_") && !key.startsWith("PROXMOX_")))
    const started = Date.now()
    const result = await runBin("nstance-server", s3Start, {
      env: { ...env, NO_COLOR: "1", ...TOKEN, PROXMOX_API_URL: "https://pve:8006/api2/json?x", AWS_ENDPOINT_URL: "ftp://seaweed:8333" },
      timeoutMs: 10_000
    })
    expect(lines(result.stderr)).toEqual([
      `✗ AWS_ENDPOINT_URL must be an http(s) URL such as http://127.0.0.1:8333 (got "ftp://seaweed:8333")`,
      `✗ PROXMOX_API_URL must not contain a query ("?…"): request paths are appended to it (got "https://pve:8006/api2/json?x")`
    ])
    expect({ status: result.status, signal: result.signal }).toEqual({ status: 1, signal: null })
    expect(Date.now() - started).toBeLessThan(5_000)
  })
})
