/**
 * Finds the real S3 server for the S3 suites: the environment `.ci/run` exported, else the repository's
 * loopback server (scripts/s3-server.sh) started here (idempotent, asynchronously). A machine without Ceph's
 * packages skips these suites with one line saying so (`skipWithout("s3")`, test/support/realComponents.ts),
 * except under CI; when the server is there but does not start, the suites FAIL with the reason.
 *
 * Call `await s3TestEnv()` in a `beforeAll` of the S3 suite (give it `S3_START_TIMEOUT_MS`: a cold start
 * takes ~15 s, more if the script must install packages).
 */
import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

export interface S3TestEnv {
  readonly endpoint: string
  readonly bucket: string
  readonly region: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
}

/** The repository root (this file is `<repo>/test/store/s3Env.ts`). */
const REPO = fileURLToPath(new URL("../..", import.meta.url))

/** The repository's own loopback S3 server. */
const SCRIPT = join(REPO, "scripts", "s3-server.sh")

/** For the `beforeAll` that awaits `s3TestEnv()`. */
export const S3_START_TIMEOUT_MS = 300_000

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

const unavailable = (reason: string) =>
  new Error(
    `no S3 server for the S3 suites: AWS_ENDPOINT_URL, S3_TEST_BUCKET, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ` +
      `are not all set, and ${reason}. Run the tests through .ci/run, or start the server with ` +
      `\`eval "$(bash scripts/s3-server.sh start)"\`.`
  )

const run = (file: string, args: ReadonlyArray<string>) =>
  new Promise<{ status: number | string | null; stdout: string; stderr: string }>((resolve) => {
    execFile(file, [...args], { encoding: "utf8", timeout: S3_START_TIMEOUT_MS - 10_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ status: error === null ? 0 : (error.code ?? error.signal ?? null), stdout, stderr })
    })
  })

const start = async (): Promise<S3TestEnv> => {
  const given = fromEnv(process.env)
  if (given !== undefined) return given
  // Two test files may get here at once: the script is idempotent but not safe to run concurrently.
  const result = existsSync("/usr/bin/flock")
    // -o: the lock is not inherited by the server daemons the script starts (they would hold it forever).
    ? await run("/usr/bin/flock", ["-o", "/tmp/nstance-s3-server-start.lock", "bash", SCRIPT, "start"])
    : await run("bash", [SCRIPT, "start"])
  if (result.status !== 0) {
    const tail = result.stderr.trim().split("\n").slice(-3).join(" / ")
    throw unavailable(`"bash scripts/s3-server.sh start" failed (${String(result.status)}): ${tail}`)
  }
  const exported: Record<string, string> = {}
  for (const line of result.stdout.split("\n")) {
    const match = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim())
    if (match) exported[match[1]!] = match[2]!.replace(/^['"]|['"]$/g, "")
  }
  const started = fromEnv(exported)
  if (started === undefined) throw unavailable(`"bash scripts/s3-server.sh start" printed no usable AWS_* exports`)
  return started
}

let cached: Promise<S3TestEnv> | undefined

/** The server's settings; rejects with the reason (and how to fix it) when there is no server. */
export const s3TestEnv = (): Promise<S3TestEnv> => (cached ??= start())

/** The variables our commands read to reach the test server (for `runCommand`'s `env`). */
export const s3Vars = (env: S3TestEnv, overrides: Record<string, string> = {}): Record<string, string> => ({
  AWS_ENDPOINT_URL: env.endpoint,
  AWS_S3_USE_PATH_STYLE: "true",
  AWS_REGION: env.region,
  AWS_ACCESS_KEY_ID: env.accessKeyId,
  AWS_SECRET_ACCESS_KEY: env.secretAccessKey,
  ...overrides
})

/** Environment for a child process (the CLI) talking to the test server. */
export const s3ChildEnv = (env: S3TestEnv, overrides: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  NO_COLOR: "1",
  ...s3Vars(env, overrides)
})

export { closedPort } from "../support/net.js"
export { skipWithout } from "../support/skipWithout.js"
