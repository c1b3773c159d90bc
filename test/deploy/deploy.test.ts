// Puts the deploy scripts' own checks (shellcheck, the bats suites in test/deploy) under `npm test`, so
// the Proxmox bootstrap scripts are covered by the command CI runs. The tools are part of the test setup
// (`.ci/run` installs them): under CI a missing shellcheck, bats or keepalived fails the run; elsewhere the
// suite is skipped with one line saying what to install (test/support/realComponents.ts).
// Everything runs asynchronously (the worker's event loop keeps answering vitest), one test per .bats file.
import { execFile } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { skipWithout } from "../support/skipWithout.js"

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..")

const INSTALL: Record<string, string> = {
  shellcheck: "apt-get install shellcheck",
  bats: "apt-get install bats",
  keepalived: "apt-get install keepalived"
}

/** Runs a tool in the repository root; resolves with its status (-1: killed or not run) and its stdout then stderr. */
const runTool = (command: string, args: ReadonlyArray<string>) =>
  new Promise<{ status: number; output: string }>((resolve, reject) => {
    execFile(command, [...args], { cwd: repo, encoding: "utf8", maxBuffer: 64 * 1024 * 1024, timeout: 120_000 }, (error, stdout, stderr) => {
      if (error?.code === "ENOENT") {
        reject(new Error(`${command} is not installed (${INSTALL[command] ?? "not on PATH"})`))
        return
      }
      const status = error === null ? 0 : typeof error.code === "number" ? error.code : -1
      resolve({ status, output: `${stdout}${stderr}${status === -1 ? `\n${error!.message}` : ""}` })
    })
  })

const installed = async (tool: string): Promise<boolean> =>
  (await runTool("sh", ["-c", `command -v ${tool} || test -x /usr/sbin/${tool}`])).status === 0

describe.skipIf(skipWithout("deploy-tools"))("deploy/proxmox bootstrap scripts", () => {
  it("shellcheck, bats and keepalived are installed", async () => {
    const missing: Array<string> = []
    for (const tool of ["shellcheck", "bats", "keepalived"]) if (!(await installed(tool))) missing.push(tool)
    if (missing.length > 0) expect.fail(`not installed: ${missing.join(", ")} (${missing.map((tool) => INSTALL[tool]).join("; ")}); .ci/run installs them`)
  })

  it("shellcheck reports nothing", async () => {
    const scripts = readdirSync(join(repo, "deploy", "proxmox"))
      .filter((name) => name.endsWith(".sh"))
      .map((name) => join("deploy", "proxmox", name))
    expect(scripts).toHaveLength(5)
    const { status, output } = await runTool("shellcheck", scripts)
    if (status !== 0) expect.fail(`shellcheck failed:\n${output}`)
  })

  const batsFiles = readdirSync(join(repo, "test", "deploy")).filter((name) => name.endsWith(".bats")).sort()

  it("there are bats suites to run", () => {
    expect(batsFiles.length).toBeGreaterThanOrEqual(6)
  })

  it.each(batsFiles)("bats test/deploy/%s passes", async (file) => {
    const path = join("test", "deploy", file)
    const { status, output } = await runTool("bats", ["--tap", path])
    if (status !== 0) expect.fail(`bats ${path} failed:\n${output}`)
    // Every @test of the file ran (none lost), and none failed.
    const declared = readFileSync(join(repo, path), "utf8").split("\n").filter((line) => /^@test /.test(line)).length
    expect(output).toMatch(new RegExp(`^1\\.\\.${declared}$`, "m"))
    expect(output).not.toMatch(/^not ok/m)
    // A tool the tests need (shellcheck, keepalived, …) being absent is a broken setup, not a skip.
    const skips = output.split("\n").filter((line) => /^ok \d+ .*# skip/.test(line))
    expect(skips.filter((line) => /is not installed/.test(line))).toEqual([])
    // Other skips (e.g. the real validator not being in the tree yet) are reported, not hidden.
    for (const line of skips) console.warn(`bats ${file}: ${line}`)
  // A bats file runs its scripts as processes (5-10 s each on a quiet machine); bats runs outside the
  // worker's event loop, so a loaded machine only makes it slower, never blocks vitest.
  }, 120_000)
})

// keepalived's `-t` check in server-with-keepalived.bats calls /usr/sbin/keepalived by path.
if (!existsSync("/usr/sbin/keepalived")) console.warn("keepalived is not at /usr/sbin/keepalived: the bats keepalived -t test will fail")
