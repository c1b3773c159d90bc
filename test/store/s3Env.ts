/**
 * Finds the real S3 server for the S3 suites: the environment `.ci/run` exported, else the shared
 * loopback server started here (idempotent), else a reason to skip that the suite prints loudly.
 */
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { createServer } from "node:net"

export interface S3TestEnv {
  readonly endpoint: string
  readonly bucket: string
  readonly region: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
}

const SCRIPT = process.env["NSTANCE_S3_SERVER_SCRIPT"] ?? "/work/shared/tools/s3-server.sh"

// The SDK's notice about its future Node requirement is noise in test output.
process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"

const fromEnv = (env: Record<string, string | undefined>): S3TestEnv | undefined => {
  const { AWS_ENDPOINT_URL, S3_TEST_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY } = env
  if (!AWS_ENDPOINT_URL || !S3_TEST_BUCKET || !AWS_ACCESS_KEY_ID || !AWS_SECRET_ACCESS_KEY) return undefined
  return {
    endpoint: AWS_ENDPOINT_URL,
    bucket: S3_TEST_BUCKET,
    region: env["AWS_REGION"] ?? "us-east-1",
    accessKeyId: AWS_ACCESS_KEY_ID,
    secretAccessKey: AWS_SECRET_ACCESS_KEY
  }
}

let cached: S3TestEnv | string | undefined

/** The server's settings, or a string saying why there is none. Starting it may take ~15 s. */
export const s3TestEnv = (): S3TestEnv | string => {
  if (cached !== undefined) return cached
  const given = fromEnv(process.env)
  if (given !== undefined) return (cached = given)
  if (!existsSync(SCRIPT)) return (cached = `S3_TEST_BUCKET is not set and ${SCRIPT} does not exist`)
  // Two test files may get here at once: the script is idempotent but not safe to run concurrently.
  const run = existsSync("/usr/bin/flock")
    ? spawnSync("/usr/bin/flock", ["/tmp/nstance-s3-server-start.lock", "bash", SCRIPT, "start"], { encoding: "utf8", timeout: 300_000 })
    : spawnSync("bash", [SCRIPT, "start"], { encoding: "utf8", timeout: 300_000 })
  if (run.status !== 0) {
    const tail = `${run.stderr ?? ""}`.trim().split("\n").slice(-2).join(" / ")
    return (cached = `S3_TEST_BUCKET is not set and "${SCRIPT} start" failed (status ${run.status}): ${tail}`)
  }
  const exported: Record<string, string> = {}
  for (const line of run.stdout.split("\n")) {
    const match = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim())
    if (match) exported[match[1]!] = match[2]!.replace(/^['"]|['"]$/g, "")
  }
  return (cached = fromEnv(exported) ?? `"${SCRIPT} start" printed no usable AWS_* exports`)
}

/** Environment for a child process (the CLI) talking to the test server. */
export const s3ChildEnv = (env: S3TestEnv, overrides: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  NO_COLOR: "1",
  AWS_ENDPOINT_URL: env.endpoint,
  AWS_S3_USE_PATH_STYLE: "true",
  AWS_REGION: env.region,
  AWS_ACCESS_KEY_ID: env.accessKeyId,
  AWS_SECRET_ACCESS_KEY: env.secretAccessKey,
  ...overrides
})

/** A loopback port that nothing listens on: bind one, then close it. */
export const closedPort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
