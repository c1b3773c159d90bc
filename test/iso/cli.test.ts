import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { IsoReadError, readIsoFiles } from "../../src/domain/iso9660.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-iso-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const ID = "web06dx9xy919t3v9kzd2xdsyzb3g"
const admin = (...args: ReadonlyArray<string>) => {
  const result = spawnSync(process.execPath, ["bin/nstance-admin.js", ...args], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}
const dec = new TextDecoder()

describe("nstance-admin iso", () => {
  const userData = join(dir, "user-data.sh")
  writeFileSync(userData, "apt-get install -y nginx\n")
  const network = join(dir, "network.yaml")
  writeFileSync(network, "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n")

  it("writes the seed ISO a VM would get: shebang added, meta-data from the id, network-config as given", () => {
    const out = join(dir, "seed.iso")
    const { status, stdout, stderr } = admin("iso", "--instance-id", ID, "--user-data", userData, "--network-config", network, "-o", out)
    expect(stderr).toBe("")
    expect(status).toBe(0)
    expect(stdout.trim()).toMatch(new RegExp(`^wrote .*seed\\.iso \\(\\d+ bytes, volume cidata\\): user-data, meta-data, network-config$`))
    const back = readIsoFiles(readFileSync(out))
    if (back instanceof IsoReadError) throw back
    expect(back.volumeId).toBe("cidata")
    expect(dec.decode(back.files.get("user-data"))).toBe("#!/bin/bash\napt-get install -y nginx\n")
    expect(dec.decode(back.files.get("meta-data"))).toBe(`instance-id: ${ID}\nlocal-hostname: ${ID}\n`)
    expect(dec.decode(back.files.get("network-config"))).toBe("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n")
  })

  it("uses --hostname for local-hostname", () => {
    const out = join(dir, "named.iso")
    expect(admin("iso", "--instance-id", ID, "--hostname", "web-1", "--user-data", userData, "--output", out).status).toBe(0)
    const back = readIsoFiles(readFileSync(out))
    if (back instanceof IsoReadError) throw back
    expect(dec.decode(back.files.get("meta-data"))).toBe(`instance-id: ${ID}\nlocal-hostname: web-1\n`)
    expect(back.files.has("network-config")).toBe(false)
  })

  it.each([
    ["an invalid instance id", ["--instance-id", "web123"], /^✗ --instance-id: invalid instance ID "web123": must be 29 characters/],
    ["a hostname that is not a DNS label", ["--instance-id", ID, "--hostname", "web_1"], /^✗ invalid cloud-init local-hostname: "web_1" is not a DNS label/],
    ["a missing user-data file", ["--instance-id", ID, "--user-data", "/nonexistent/ud"], /^✗ cannot read --user-data \/nonexistent\/ud: /]
  ])("refuses %s with one line and writes nothing", (_label, args, expected) => {
    const out = join(dir, `bad-${_label.length}.iso`)
    const full = args.includes("--user-data") ? args : [...args, "--user-data", userData]
    const { status, stderr } = admin("iso", ...full, "-o", out)
    expect(status).toBe(1)
    expect(stderr.trimEnd().split("\n")).toHaveLength(1)
    expect(stderr.trimEnd()).toMatch(expected)
    expect(existsSync(out)).toBe(false)
  })

  it("describes every flag in --help", () => {
    const { stdout } = admin("iso", "--help")
    for (const flag of ["--instance-id", "--hostname", "--user-data", "--network-config", "--output"]) expect(stdout).toContain(flag)
  })
})
