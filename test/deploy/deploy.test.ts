// Puts the deploy scripts' own checks (shellcheck, the bats suites in test/deploy) under `npm test`, so
// the Proxmox bootstrap scripts are covered by the command CI runs. A missing tool skips loudly.
import { spawnSync } from "node:child_process"
import { readdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..")

const installed = (tool: string): boolean => spawnSync("sh", ["-c", `command -v ${tool}`]).status === 0

const runTool = (command: string, args: ReadonlyArray<string>): { status: number | null; output: string } => {
  const result = spawnSync(command, [...args], { cwd: repo, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
  return { status: result.status, output: `${result.stdout ?? ""}${result.stderr ?? ""}` }
}

const hasShellcheck = installed("shellcheck")
const hasBats = installed("bats")
if (!hasShellcheck) console.warn("SKIPPED: shellcheck is not installed (apt-get install shellcheck); deploy scripts not linted")
if (!hasBats) console.warn("SKIPPED: bats is not installed (apt-get install bats); deploy script tests not run")

describe("deploy/proxmox bootstrap scripts", () => {
  it.skipIf(!hasShellcheck)("shellcheck reports nothing", () => {
    const scripts = readdirSync(join(repo, "deploy", "proxmox"))
      .filter((name) => name.endsWith(".sh"))
      .map((name) => join("deploy", "proxmox", name))
    expect(scripts).toHaveLength(5)
    const { status, output } = runTool("shellcheck", scripts)
    if (status !== 0) expect.fail(`shellcheck failed:\n${output}`)
  })

  it.skipIf(!hasBats)("bats test/deploy passes", () => {
    const { status, output } = runTool("bats", ["--tap", "test/deploy"])
    if (status !== 0) expect.fail(`bats test/deploy failed:\n${output}`)
    // Skipped bats tests (e.g. the real validator not being in the tree yet) are reported, not hidden.
    for (const line of output.split("\n").filter((l) => /^ok \d+ .*# skip/.test(l))) console.warn(`bats ${line}`)
    expect(output).toMatch(/^1\.\.\d+/m)
    expect(output).not.toMatch(/^not ok/m)
  }, 600_000)
})
