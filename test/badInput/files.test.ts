/**
 * Issue 16, classes 1 and 2: an input file that is not a regular file (a FIFO would block `open()`
 * forever), too large, or nested deep enough to overflow the parser's stack is refused with one line
 * naming the flag, before anything is read, written or started.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { parseJsonc, parseShardConfig } from "../../src/domain/config/index.js"
import { runBin } from "../support/spawn.js"
import { admin, filesUnder, lines, mkfifo, scratch, server, TOKEN } from "./support.js"

const dir = scratch("files")
const fifo = join(dir, "pipe")
const directory = join(dir, "a-directory")
const bucket = join(dir, "bucket")
const out = join(dir, "out")
const deep = join(dir, "deep.jsonc")
const huge = join(dir, "huge.jsonc")
const ID = "web06h0enszbnw5k9e78bfeywkja0"

beforeAll(async () => {
  await mkfifo(fifo)
  mkdirSync(directory)
  mkdirSync(out)
  writeFileSync(deep, "[".repeat(200_000))
  // A 5 MiB comment around an empty object: JSONC, but no shard config is anywhere near that size.
  writeFileSync(huge, `/*${"x".repeat(5 * 1024 * 1024)}*/ {}`)
  writeFileSync(join(dir, "user-data"), "#cloud-config\n")
})

const push = (file: string, ...extra: ReadonlyArray<string>) =>
  admin(["config", "push", file, "--storage", "file", "--bucket", bucket, "--shard", "pve-a", ...extra])
const serverStart = ["--storage", "file", "--bucket", bucket, "--shard", "pve-a", "--id", "r1"]

// Each row: command, arguments, the one line on stderr.
const notRegular: ReadonlyArray<readonly [string, () => Promise<{ status: number; stdout: string; stderr: string }>, string]> = [
  ["server --validate FIFO", () => server(["--validate", fifo]), `✗ --validate ${fifo}: not a regular file (FIFO)`],
  ["server --validate directory", () => server(["--validate", directory]), `✗ --validate ${directory}: not a regular file (directory)`],
  ["server --config FIFO", () => server([...serverStart, "--config", fifo], TOKEN), `✗ --config ${fifo}: not a regular file (FIFO)`],
  ["server --embedded --config FIFO", () => server(["--embedded", "--config", fifo]), `✗ --config ${fifo}: not a regular file (FIFO)`],
  ["admin config push FIFO", () => push(fifo), `✗ ${fifo}: not a regular file (FIFO)`],
  ["admin config push --force FIFO", () => push(fifo, "--force"), `✗ ${fifo}: not a regular file (FIFO)`],
  ["admin config push directory", () => push(directory), `✗ ${directory}: not a regular file (directory)`],
  ["admin place --resources FIFO", () => admin(["place", "--resources", fifo]), `✗ --resources ${fifo}: not a regular file (FIFO)`],
  [
    "admin iso --user-data FIFO",
    () => admin(["iso", "--instance-id", ID, "--user-data", fifo, "-o", join(out, "seed.iso")]),
    `✗ --user-data ${fifo}: not a regular file (FIFO)`
  ],
  [
    "admin iso --network-config FIFO",
    () => admin(["iso", "--instance-id", ID, "--user-data", join(dir, "user-data"), "--network-config", fifo, "-o", join(out, "seed.iso")]),
    `✗ --network-config ${fifo}: not a regular file (FIFO)`
  ],
  ["server --validate missing file", () => server(["--validate", join(dir, "nope.jsonc")]), `✗ --validate ${join(dir, "nope.jsonc")}: no such file`]
]

describe("input files that are not regular files are refused before they are opened", () => {
  it.each(notRegular)("%s", async (_name, run, line) => {
    const started = Date.now()
    const result = await run()
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr).toBe(`${line}\n`)
    expect(filesUnder(bucket)).toEqual([])
    expect(filesUnder(out)).toEqual([])
  })

  it("the real process on a FIFO exits at once (it used to block in open() and ignore SIGTERM)", async () => {
    const result = await runBin("nstance-server", ["--validate", fifo], { timeoutMs: 10_000 })
    expect(result.signal).toBe(null)
    expect(result.status).toBe(1)
    expect(result.stderr).toBe(`✗ --validate ${fifo}: not a regular file (FIFO)\n`)
  })
})

describe("size and nesting are bounded before parsing", () => {
  const rows: ReadonlyArray<readonly [string, () => Promise<{ status: number; stdout: string; stderr: string }>, ReadonlyArray<string>]> = [
    ["--validate 200,000 nested [", () => server(["--validate", deep]), [
      "✗ line 1, column 65: nested more than 64 levels deep",
      `✗ ${deep}: 1 problem; configuration is not valid`
    ]],
    ["config push 200,000 nested [", () => push(deep), [
      "✗ line 1, column 65: nested more than 64 levels deep",
      `✗ ${deep}: 1 problem; nothing uploaded (see nstance-server --validate)`
    ]],
    ["config push --force 200,000 nested [", () => push(deep, "--force"), [
      "✗ line 1, column 65: nested more than 64 levels deep",
      `✗ ${deep}: 1 problem; nothing uploaded`
    ]],
    ["--validate a 5 MiB file", () => server(["--validate", huge]), [`✗ --validate ${huge}: 5.0 MiB is too large for a shard config (at most 4 MiB)`]],
    ["config push --force a 5 MiB file", () => push(huge, "--force"), [`✗ ${huge}: 5.0 MiB is too large for a shard config (at most 4 MiB)`]]
  ]
  it.each(rows)("%s", async (_name, run, expected) => {
    const result = await run()
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(lines(result.stderr)).toEqual(expected)
    expect(filesUnder(bucket)).toEqual([])
  })

  it("the real process answers the nested file in one line, without a stack trace", async () => {
    const result = await runBin("nstance-server", ["--validate", deep])
    expect(result.status).toBe(1)
    expect(lines(result.stderr)).toEqual(["✗ line 1, column 65: nested more than 64 levels deep", `✗ ${deep}: 1 problem; configuration is not valid`])
  })

  it("the bounds hold for text that reaches the parser some other way (the daemon reads the bucket)", () => {
    expect(parseJsonc("[".repeat(200_000))).toEqual(Either.left([{ line: 1, column: 65, message: "nested more than 64 levels deep" }]))
    // Brackets inside strings and comments are not nesting.
    expect(Either.isRight(parseJsonc(`// ${"[".repeat(100)}\n{ "a": "${"{".repeat(100)}" }`))).toBe(true)
    const text = `{ "a": ${"[".repeat(64)}${"]".repeat(64)} }`
    expect(parseJsonc(text)).toEqual(Either.left([{ line: 1, column: 71, message: "nested more than 64 levels deep" }]))
    const parsed = parseShardConfig(" ".repeat(4 * 1024 * 1024 + 1))
    expect(Either.isLeft(parsed) && parsed.left.problems).toEqual([{ path: "", message: "4.0 MiB is too large (at most 4 MiB)" }])
  })
})
