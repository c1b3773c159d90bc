/**
 * Issue 16, weak classes: every refusal of the command line names the flag and what it expects (the CLI
 * library's own messages did not), an invalid `--prefix` refuses the start like an absolute one, and
 * `nstance-admin` without a subcommand says so instead of exiting 0 with colour codes in a pipe.
 */
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { checkStartOptions } from "../../src/cli/server.js"
import { runBin } from "../support/spawn.js"
import { admin, filesUnder, lines, scratch, server, sim, TOKEN } from "./support.js"

const dir = scratch("argv")
const bucket = join(dir, "bucket")
const start = ["--bucket", bucket, "--id", "r1"]
const pushFlags = ["--storage", "file", "--bucket", bucket, "--shard", "pve-a"]

type Run = () => Promise<{ status: number; stdout: string; stderr: string }>

// The admin tool gains subcommands over time; the line lists them all, whatever they are.
const adminSubcommands = /(\S+, )*config, (\S+, )*id, (\S+, )*iso(, \S+)* or \S+/.source

// Each row: the case, the run, the one line on stderr (exactly, or matching a pattern).
const cases: ReadonlyArray<readonly [string, Run, string | RegExp]> = [
  ["a choice that is not one", () => server(["--storage", "s4", ...start, "--shard", "a"], TOKEN), `✗ --storage must be one of s3, gcs, file (got "s4")`],
  ["a choice given as --flag=value", () => server(["--storage=nfs", ...start, "--shard", "a"], TOKEN), `✗ --storage must be one of s3, gcs, file (got "nfs")`],
  ["a log format that is not one", () => server(["--log-format", "xml", "--validate", "x"]), `✗ --log-format must be one of text, json (got "xml")`],
  ["an integer that is not one", () => admin(["place", "--resources", "r.json", "--count", "abc"]), `✗ --count must be an integer (got "abc")`],
  ["an integer that is a fraction", () => sim(["--port", "1.5"]), `✗ --port must be an integer (got "1.5")`],
  ["a simulator choice", () => sim(["--latency", "slow"]), `✗ --latency must be one of fast, demo, realistic (got "slow")`],
  ["a flag given twice", () => server(["--storage", "file", ...start, "--shard", "a", "--shard", "b"], TOKEN), `✗ --shard is given twice ("a", then "b"); give it once`],
  ["a boolean flag given twice", () => admin(["place", "--resources", "r.json", "--json", "--json"]), "✗ --json is given twice; give it once"],
  ["a value missing at the end", () => server(["--storage", "file", ...start, "--shard"], TOKEN), "✗ --shard needs a value after it"],
  ["a value missing before the next flag", () => server(["--shard", "--storage", "file", ...start], TOKEN), "✗ --shard needs a value after it (got the flag --storage)"],
  ["a choice value missing", () => server([...start, "--shard", "a", "--storage"], TOKEN), "✗ --storage needs one of s3, gcs, file after it"],
  ["an integer value missing", () => admin(["place", "--resources", "r.json", "--memory"]), "✗ --memory needs an integer after it"],
  ["a short alias without its value", () => admin(["config", "pull", ...pushFlags, "-o"]), "✗ -o needs a value after it"],
  ["the built-in --log-level after the command's flags", () => server(["--validate", "x.jsonc", "--log-level", "info"]), "✗ --log-level must come before the other flags"],
  ["a misspelt flag", () => server(["--storag", "file"]), "✗ unknown flag --storag for nstance-server (did you mean --storage?)"],
  ["an unknown flag", () => admin(["config", "push", "f.jsonc", ...pushFlags, "--yes"]), "✗ unknown flag --yes for nstance-admin config push (see nstance-admin config push --help)"],
  ["an extra argument", () => admin(["config", "push", "a.jsonc", "b.jsonc", ...pushFlags]), `✗ unexpected argument "b.jsonc" for nstance-admin config push`],
  ["a missing argument", () => admin(["config", "push", ...pushFlags]), "✗ missing argument FILE"],
  ["missing required flags", () => admin(["config", "pull", "--storage", "file"]), "✗ missing required flags --bucket, --shard"],
  ["an unknown subcommand", () => admin(["conf"]), new RegExp(`^✗ unknown subcommand "conf" for nstance-admin \\(one of ${adminSubcommands}\\)$`)],
  ["no subcommand", () => admin([]), new RegExp(`^✗ nstance-admin needs a subcommand: ${adminSubcommands} \\(see nstance-admin --help\\)$`)],
  ["no subcommand of config", () => admin(["config"]), "✗ nstance-admin config needs a subcommand: pull or push (see nstance-admin config --help)"],
  // Issue 16: an invalid --prefix was retried forever as a warning; now it refuses the start like "/abs".
  ["a --prefix with '..'", () => server(["--storage", "file", ...start, "--shard", "a", "--prefix", "../x/"], TOKEN), `✗ --prefix must not contain '.' or '..' segments (got "../x/")`],
  ["a --prefix with '//'", () => server(["--storage", "file", ...start, "--shard", "a", "--prefix", "a//b"], TOKEN), `✗ --prefix must not contain empty segments ('//') (got "a//b")`],
  ["an absolute --prefix", () => server(["--storage", "file", ...start, "--shard", "a", "--prefix", "/abs/"], TOKEN), `✗ --prefix must not start with "/" (got "/abs/")`]
]

describe("command-line refusals name the flag and what it expects", () => {
  it.each(cases)("%s", async (_name, run, line) => {
    const result = await run()
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    if (typeof line === "string") expect(result.stderr).toBe(`${line}\n`)
    else expect(lines(result.stderr)).toEqual([expect.stringMatching(line)])
    expect(filesUnder(bucket)).toEqual([])
  })

  it("well-formed command lines still reach the command", async () => {
    expect((await admin(["id", "new", "--kind", "web"])).status).toBe(0)
    expect((await admin(["id", "new", "--kind=web"])).status).toBe(0)
    expect((await server(["--log-level", "info", "--validate", "examples/single-cluster.jsonc"])).status).toBe(0)
    const help = await admin(["config", "push", "--help"])
    expect(help.status).toBe(0)
    expect(help.stdout).toContain("--force")
  })

  it("checkStartOptions applies the object-key rules to --prefix", () => {
    const flags = { storage: "file", bucket: "b", shard: "pve-a", id: "r1", cachedir: "./cache" }
    expect(Either.isRight(checkStartOptions({ ...flags, prefix: "prod/pve-a/" }, TOKEN))).toBe(true)
    expect(checkStartOptions({ ...flags, prefix: "a/./b/" }, TOKEN)).toEqual(Either.left([`--prefix must not contain '.' or '..' segments (got "a/./b/")`]))
  })
})

describe("as real processes", () => {
  it("nstance-admin without a subcommand exits 1 with one plain line (no colour codes in a pipe)", async () => {
    const result = await runBin("nstance-admin", [])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(lines(result.stderr)).toEqual([expect.stringMatching(new RegExp(`^✗ nstance-admin needs a subcommand: ${adminSubcommands} \\(see nstance-admin --help\\)$`))])
  })

  it("--help into a pipe has no colour codes", async () => {
    const { env } = process
    const result = await runBin("nstance-admin", ["--help"], { env: { ...env, NO_COLOR: undefined } })
    expect(result.status).toBe(0)
    expect(result.stdout).toContain("config")
    expect(result.stdout).not.toContain("\u001b[")
  })

  it("a bad choice is one line from the compiled server", async () => {
    const result = await runBin("nstance-server", ["--storage", "xx"])
    expect(result.status).toBe(1)
    expect(result.stderr).toBe(`✗ --storage must be one of s3, gcs, file (got "xx")\n`)
  })
})
