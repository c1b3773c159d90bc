import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { runCommand } from "../support/cli.js"
import { runBin } from "../support/spawn.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-place-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

// In-process, through the same code path as the binary; the last describe starts the real process.
const admin = (...args: ReadonlyArray<string>) => runCommand(adminCommand, "nstance-admin", args)
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
/** The message this Node's JSON.parse gives for `text` (its wording differs between Node versions). */
const jsonError = (text: string) => {
  try {
    JSON.parse(text)
  } catch (error) {
    return (error as Error).message
  }
  throw new Error(`${JSON.stringify(text)} is valid JSON`)
}
const file = (name: string, content: string) => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}

describe("nstance-admin place", () => {
  it("prints a table ranking the example cluster, with the offline node excluded", async () => {
    const { status, stdout, stderr } = await admin("place", "--resources", "examples/cluster-resources.json", "--memory", "4096", "--cores", "4")
    expect(stderr).toBe("")
    expect(status).toBe(0)
    const lines = stdout.split("\n")
    expect(lines[0]).toMatch(/^rank\s+node\s+score\s+free mem\s+free mem %\s+free cpu %\s+cpus$/)
    expect(lines[1]).toMatch(/^1\s+pve2\s+0\.8233\s+75\.5 GiB\s+60\.0\s+92\.0\s+32$/)
    expect(stdout).toMatch(/^-\s+pve4 .*excluded: not online \(status offline\)$/m)
    expect(stdout).toContain("chosen: pve2 (score 0.8233)")
    // Storage and qemu entries of the answer are not nodes.
    expect(stdout).not.toContain("local")
  })

  it("prints JSON best first with --json, and the placements in order with --count", async () => {
    const ranking = JSON.parse((await admin("place", "--resources", "examples/cluster-resources.json", "--json")).stdout) as Array<{ node: string; score: number }>
    expect(ranking.map((r) => r.node)).toEqual(["pve2", "pve3", "pve1"])
    expect(ranking[0]?.score).toBeGreaterThan(ranking[1]?.score ?? 1)
    const burst = await admin("place", "--resources", "examples/cluster-resources.json", "--memory", "16384", "--count", "5", "--json")
    expect(burst.status).toBe(0)
    const placements = JSON.parse(burst.stdout) as Array<{ node: string; score: number }>
    expect(placements.map((p) => p.node)).toEqual(["pve2", "pve3", "pve2", "pve2", "pve3"])
  })

  it("accepts a bare array with numbers as strings", async () => {
    const path = file("bare.json", JSON.stringify([
      { node: "n1", status: "online", mem: "1073741824", maxmem: "8589934592", cpu: "0.5", maxcpu: "8" },
      { node: "n2", status: "online", mem: 1073741824, maxmem: 8589934592, cpu: 0.1, maxcpu: 8 }
    ]))
    const { status, stdout } = await admin("place", "--resources", path, "--json")
    expect(status).toBe(0)
    expect((JSON.parse(stdout) as Array<{ node: string }>).map((r) => r.node)).toEqual(["n2", "n1"])
  })

  it.each([
    [
      "a field that is not a number",
      JSON.stringify({ data: [{ type: "node", node: "n1", status: "online", mem: 1, maxmem: 2, cpu: 0, maxcpu: 1 }, { type: "node", node: "n2", status: "online", mem: 1, maxmem: "lots", cpu: 0, maxcpu: 1 }] }),
      /^✗ .*bad1\.json: entry 1 \(node "n2"\): field maxmem: expected a finite number or a numeric string, got "lots"$/
    ],
    [
      "a node entry without status",
      JSON.stringify([{ type: "node", node: "n1" }]),
      /^✗ .*bad2\.json: entry 0 \(node "n1"\): field status: is missing$/
    ],
    ["text that is not JSON", "{ data: ", new RegExp(`^✗ --resources ${escapeRegExp(join(dir, "bad3.json"))}: not valid JSON: ${escapeRegExp(jsonError("{ data: "))}$`)],
    ["JSON of the wrong shape", "{\"nodes\": []}", /^✗ .*bad4\.json: expected \{"data": \[\.\.\.\]\} or an array of \/cluster\/resources entries$/],
    ["a cluster with every node offline", JSON.stringify([{ type: "node", node: "n1", status: "offline" }]), /^✗ no node can take the VM: no node is online \(n1: offline\)$/]
  ])("fails with one clear line for %s", async (_label, content, expected) => {
    const index = ["a field that is not a number", "a node entry without status", "text that is not JSON", "JSON of the wrong shape"].indexOf(_label) + 1
    const path = file(index > 0 ? `bad${index}.json` : "offline.json", content)
    const { status, stderr } = await admin("place", "--resources", path, "--json")
    expect(status).toBe(1)
    expect(stderr.trimEnd().split("\n")).toHaveLength(1)
    expect(stderr.trimEnd()).toMatch(expected)
  })

  it("fails with one line for a missing file and a bad --count", async () => {
    const missing = await admin("place", "--resources", join(dir, "nope.json"))
    expect(missing.status).toBe(1)
    expect(missing.stderr.trimEnd()).toBe(`✗ --resources ${join(dir, "nope.json")}: no such file`)
    const count = await admin("place", "--resources", "examples/cluster-resources.json", "--count", "0")
    expect(count.status).toBe(1)
    expect(count.stderr.trimEnd()).toBe("✗ --count must be at least 1, got 0")
  })

  it("describes every flag in --help", async () => {
    const { stdout } = await admin("place", "--help")
    for (const flag of ["--resources", "--memory", "--cores", "--count", "--json"]) expect(stdout).toContain(flag)
    expect(stdout).toContain("free memory 60 %")
  })
})

describe("nstance-admin place as a real process", () => {
  it("prints the ranking on stdout and exits 0", async () => {
    const { status, signal, stdout, stderr } = await runBin("nstance-admin", ["place", "--resources", "examples/cluster-resources.json", "--memory", "4096", "--cores", "4"])
    expect(stderr).toBe("")
    expect(signal).toBeNull()
    expect(status).toBe(0)
    expect(stdout.split("\n")[1]).toMatch(/^1\s+pve2\s+0\.8233\s+75\.5 GiB\s+60\.0\s+92\.0\s+32$/)
    expect(stdout).toContain("chosen: pve2 (score 0.8233)")
  })

  it("prints one line on stderr and exits 1 for a missing file", async () => {
    const { status, stdout, stderr } = await runBin("nstance-admin", ["place", "--resources", join(dir, "nope.json")])
    expect(status).toBe(1)
    expect(stdout).toBe("")
    expect(stderr.trimEnd().split("\n")).toHaveLength(1)
    expect(stderr.trimEnd()).toBe(`✗ --resources ${join(dir, "nope.json")}: no such file`)
  })
})
