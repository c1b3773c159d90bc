/**
 * Issue 16, weak class "raw bytes reach the terminal": everything printed from user data passes through
 * one escaping helper, so a config key with `\u001b[2J` cannot clear the screen and a binary file is not
 * echoed into it.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { escapeControl } from "../../src/cli/escape.js"
import { runBin } from "../support/spawn.js"
import { admin, lines, scratch, server } from "./support.js"

const dir = scratch("escape")

describe("escapeControl", () => {
  it.each([
    ["plain text and non-ASCII stay", "pve-a: größe ✓", "pve-a: größe ✓"],
    ["ESC (clear screen)", "\u001b[2J", "\\x1b[2J"],
    ["NUL, BEL, DEL", "a\u0000b\u0007c\u007f", "a\\x00b\\x07c\\x7f"],
    ["newline, tab, carriage return", "a\nb\tc\rd", "a\\nb\\tc\\rd"],
    ["C1 control (CSI)", "\u009b2J", "\\x9b2J"],
    ["bidirectional override", "abc\u202edef", "abc\\u{202e}def"]
  ])("%s", (_name, text, escaped) => {
    expect(escapeControl(text)).toBe(escaped)
  })
})

describe("printers escape what they echo", () => {
  it("--validate: a config key with an escape sequence", async () => {
    const file = join(dir, "escape-key.jsonc")
    writeFileSync(file, '{ "\\u001b[2Jcluster": 1 }')
    const result = await server(["--validate", file])
    expect(result.status).toBe(1)
    expect(result.stderr).not.toContain("\u001b")
    expect(lines(result.stderr)[0]).toBe("✗ \\x1b[2Jcluster: unknown field (expected one of: cluster, shard, defaults, templates, certificates, groups)")
  })

  it("place: a binary --resources file is not echoed raw", async () => {
    const file = join(dir, "binary.json")
    writeFileSync(file, Buffer.from([0x00, 0x01, 0x1b, 0x5b, 0x32, 0x4a, 0x62]))
    const result = await admin(["place", "--resources", file])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr).toMatch(new RegExp(`^✗ --resources ${file}: not valid JSON: Unexpected token '\\\\x00', "\\\\x00\\\\x01\\\\x1b\\[2Jb" is not valid JSON\\n$`))
  })

  it("place: a node name with control characters in the table and in the warning", async () => {
    const file = join(dir, "names.json")
    writeFileSync(file, JSON.stringify([
      { node: "ok\u001b[31m", status: "online", mem: 1, maxmem: 100, cpu: 0.1, maxcpu: 4 },
      { node: "bad\u0007", status: "online", mem: -1, maxmem: 100, cpu: 0.1, maxcpu: 4 }
    ]))
    const result = await admin(["place", "--resources", file])
    expect(result.status).toBe(0)
    expect(result.stdout + result.stderr).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/)
    expect(result.stdout).toContain("chosen: ok\\x1b[31m")
    expect(result.stderr).toBe(`⚠ --resources ${file}: node "bad\\u0007": mem -1 is negative; not ranked\n`)
  })

  it("the compiled server prints the escaped key (what a terminal receives)", async () => {
    const file = join(dir, "escape-key.jsonc")
    const result = await runBin("nstance-server", ["--validate", file])
    expect(result.status).toBe(1)
    expect(result.stderr).not.toContain("\u001b")
    expect(result.stderr).toContain("\\x1b[2Jcluster")
  })
})
