import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { IsoReadError, readIsoFiles } from "../../src/domain/iso9660.js"
import { runCommand } from "../support/cli.js"
import { runBin } from "../support/spawn.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-iso-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const ID = "web06dx9xy919t3v9kzd2xdsyzb3g"
// In-process, through the same code path as the binary; the last describe starts the real process.
const admin = (...args: ReadonlyArray<string>) => runCommand(adminCommand, "nstance-admin", args)
const dec = new TextDecoder()
const readBack = (path: string) => {
  const back = readIsoFiles(readFileSync(path))
  if (back instanceof IsoReadError) throw back
  return back
}

const userData = join(dir, "user-data.sh")
writeFileSync(userData, "apt-get install -y nginx\n")
const network = join(dir, "network.yaml")
writeFileSync(network, "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n")

describe("nstance-admin iso", () => {
  it("writes the seed ISO a VM would get: shebang added, meta-data from the id, network-config as given", async () => {
    const out = join(dir, "seed.iso")
    const { status, stdout, stderr } = await admin("iso", "--instance-id", ID, "--user-data", userData, "--network-config", network, "-o", out)
    expect(stderr).toBe("")
    expect(status).toBe(0)
    expect(stdout.trim()).toMatch(new RegExp(`^wrote .*seed\\.iso \\(\\d+ bytes, volume cidata\\): user-data, meta-data, network-config$`))
    const back = readBack(out)
    expect(back.volumeId).toBe("cidata")
    expect(dec.decode(back.files.get("user-data"))).toBe("#!/bin/bash\napt-get install -y nginx\n")
    expect(dec.decode(back.files.get("meta-data"))).toBe(`instance-id: ${ID}\nlocal-hostname: ${ID}\n`)
    expect(dec.decode(back.files.get("network-config"))).toBe("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n")
  })

  it("uses --hostname for local-hostname", async () => {
    const out = join(dir, "named.iso")
    expect((await admin("iso", "--instance-id", ID, "--hostname", "web-1", "--user-data", userData, "--output", out)).status).toBe(0)
    const back = readBack(out)
    expect(dec.decode(back.files.get("meta-data"))).toBe(`instance-id: ${ID}\nlocal-hostname: web-1\n`)
    expect(back.files.has("network-config")).toBe(false)
  })

  it.each([
    ["an invalid instance id", ["--instance-id", "web123"], /^✗ --instance-id: invalid instance ID "web123": must be 29 characters/],
    ["a hostname that is not a DNS label", ["--instance-id", ID, "--hostname", "web_1"], /^✗ invalid cloud-init local-hostname: "web_1" is not a DNS label/],
    ["a missing user-data file", ["--instance-id", ID, "--user-data", "/nonexistent/ud"], /^✗ --user-data \/nonexistent\/ud: no such file$/]
  ])("refuses %s with one line and writes nothing", async (_label, args, expected) => {
    const out = join(dir, `bad-${_label.length}.iso`)
    const full = args.includes("--user-data") ? args : [...args, "--user-data", userData]
    const { status, stderr } = await admin("iso", ...full, "-o", out)
    expect(status).toBe(1)
    expect(stderr.trimEnd().split("\n")).toHaveLength(1)
    expect(stderr.trimEnd()).toMatch(expected)
    expect(existsSync(out)).toBe(false)
  })

  it("describes every flag in --help", async () => {
    const { stdout } = await admin("iso", "--help")
    for (const flag of ["--instance-id", "--hostname", "--user-data", "--network-config", "--output"]) expect(stdout).toContain(flag)
  })
})

describe("nstance-admin iso as a real process", () => {
  it("writes the ISO, prints one line on stdout and exits 0", async () => {
    const out = join(dir, "spawned.iso")
    const { status, signal, stdout, stderr } = await runBin("nstance-admin", ["iso", "--instance-id", ID, "--user-data", userData, "-o", out])
    expect(stderr).toBe("")
    expect(signal).toBeNull()
    expect(status).toBe(0)
    expect(stdout).toMatch(new RegExp(`^wrote .*spawned\\.iso \\(\\d+ bytes, volume cidata\\): user-data, meta-data\\n$`))
    expect(dec.decode(readBack(out).files.get("meta-data"))).toBe(`instance-id: ${ID}\nlocal-hostname: ${ID}\n`)
  })

  it("prints one line on stderr, exits 1 and writes nothing for an invalid instance id", async () => {
    const out = join(dir, "spawned-bad.iso")
    const { status, stdout, stderr } = await runBin("nstance-admin", ["iso", "--instance-id", "web123", "--user-data", userData, "-o", out])
    expect(status).toBe(1)
    expect(stdout).toBe("")
    expect(stderr.trimEnd().split("\n")).toHaveLength(1)
    expect(stderr.trimEnd()).toMatch(/^✗ --instance-id: invalid instance ID "web123": must be 29 characters/)
    expect(existsSync(out)).toBe(false)
  })
})
