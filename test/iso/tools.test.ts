/**
 * Our ISO images checked by the tools Linux users and cloud-init rely on (isoinfo from genisoimage, xorriso),
 * and images made by genisoimage/xorriso read back by our reader. A missing tool is reported loudly and only
 * its own checks are skipped.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { buildIso, IsoReadError, readIsoFiles } from "../../src/domain/iso9660.js"
import { seedIsoBytes } from "../../src/layers/IsoBuilder9660.js"
import { IsoBuildError } from "../../src/services/IsoBuilder.js"
import { patternBytes } from "./bytes.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-iso-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const available = new Map<string, boolean>()
const has = (tool: string): boolean => {
  let found = available.get(tool)
  if (found === undefined) {
    found = spawnSync(tool, ["-version"], { stdio: "ignore" }).error === undefined
    available.set(tool, found)
  }
  if (!found) console.warn(`⚠⚠⚠ ${tool} is not installed: SKIPPING the checks that need it (apt-get install genisoimage xorriso)`)
  return found
}

const run = (tool: string, args: ReadonlyArray<string>): { stdout: Buffer; stderr: string } => {
  const result = spawnSync(tool, args, { maxBuffer: 64 * 1024 * 1024 })
  if (result.status !== 0) throw new Error(`${tool} ${args.join(" ")} exited ${result.status}: ${String(result.stderr)}`)
  return { stdout: result.stdout, stderr: String(result.stderr) }
}

const enc = new TextEncoder()
const userData = enc.encode("#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: hello\n")
const metaData = enc.encode("instance-id: web06dx9xy919t3v9kzd2xdsyzb3g\nlocal-hostname: web06dx9xy919t3v9kzd2xdsyzb3g\n")
const networkConfig = enc.encode("version: 2\n")
// A multi-sector file with every byte value, and one of several MiB, so extents and lengths are exercised.
const binary = patternBytes(3 * 2048 + 5, 99)
const large = patternBytes(6 * 1024 * 1024 + 1, 5)

const files = [
  { name: "user-data", data: userData },
  { name: "meta-data", data: metaData },
  { name: "network-config", data: networkConfig },
  { name: "payload.bin", data: binary },
  { name: "large.bin", data: large },
  { name: "empty", data: new Uint8Array(0) }
]
const isoPath = join(dir, "ours.iso")
writeFileSync(isoPath, buildIso(files, { volumeId: "cidata" }))

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b))

describe("our ISO as seen by isoinfo", () => {
  it("reports volume id cidata, 2048-byte blocks, Rock Ridge and Joliet", () => {
    if (!has("isoinfo")) return
    const out = run("isoinfo", ["-d", "-i", isoPath]).stdout.toString()
    expect(out).toMatch(/^Volume id: cidata$/m)
    expect(out).toMatch(/^Logical block size is: 2048$/m)
    expect(out).toMatch(/^Rock Ridge signatures version 1 found$/m)
    expect(out).toMatch(/^Joliet with UCS level 3 found$/m)
    expect(out).toMatch(new RegExp(`^Volume size is: ${readFileSync(isoPath).length / 2048}$`, "m"))
  })

  it.each([["-R"], ["-J"]])("lists the exact lowercase names with %s", (flag) => {
    if (!has("isoinfo")) return
    const out = run("isoinfo", [flag, "-l", "-i", isoPath]).stdout.toString()
    for (const file of files) expect(out).toMatch(new RegExp(` ${file.data.length} .*\\]  ${file.name.replace(".", "\\.")} *$`, "m"))
  })

  it("lists level-1 names in the primary tree", () => {
    if (!has("isoinfo")) return
    const out = run("isoinfo", ["-l", "-i", isoPath]).stdout.toString()
    expect(out).toContain("USER_DAT.;1")
    expect(out).toContain("META_DAT.;1")
  })

  it.each(files.map((f) => [f.name, f.data] as const))("extracts %s byte for byte (Rock Ridge and Joliet)", (name, data) => {
    if (!has("isoinfo")) return
    expect(same(run("isoinfo", ["-R", "-x", `/${name}`, "-i", isoPath]).stdout, data)).toBe(true)
    expect(same(run("isoinfo", ["-J", "-x", `/${name}`, "-i", isoPath]).stdout, data)).toBe(true)
  })
})

describe("our ISO as seen by xorriso", () => {
  it("loads it with volume id cidata, lists the names, and shows Rock Ridge permissions", () => {
    if (!has("xorriso")) return
    const { stdout, stderr } = run("xorriso", ["-indev", isoPath, "-pvd_info", "-ls", "/", "--", "-lsdl", "/user-data", "--"])
    const out = stdout.toString()
    expect(out).toMatch(/^Volume Id\s*: cidata$/m)
    expect(stderr).not.toMatch(/SORRY|FAILURE|WARNING/)
    const names = out.split("\n").filter((l) => l.startsWith("'")).map((l) => l.slice(1, -1)).sort()
    expect(names).toEqual(files.map((f) => f.name).sort())
    // Mode r--r--r-- comes from our PX entry; without Rock Ridge xorriso would invent its own.
    expect(out).toMatch(/^-r--r--r-- .* '\/user-data'$/m)
  })

  it("extracts every file byte for byte", () => {
    if (!has("xorriso")) return
    const out = join(dir, "extracted")
    const { stderr } = run("xorriso", ["-osirrox", "on", "-indev", isoPath, "-extract", "/", out])
    expect(stderr).not.toMatch(/SORRY|FAILURE|WARNING/)
    for (const file of files) expect(same(readFileSync(join(out, file.name)), file.data)).toBe(true)
  })

  it("reads the Joliet tree when Rock Ridge is switched off", () => {
    if (!has("xorriso")) return
    const { stdout } = run("xorriso", ["-rockridge", "off", "-indev", isoPath, "-ls", "/"])
    expect(stdout.toString()).toContain("'user-data'")
    expect(stdout.toString()).toContain("'meta-data'")
  })
})

describe("our ISO as seen by blkid (how cloud-init's NoCloud finds its seed: TYPE=iso9660, LABEL=cidata)", () => {
  it("probes as an iso9660 filesystem labelled cidata", () => {
    const blkid = ["blkid", "/usr/sbin/blkid", "/sbin/blkid"].find((candidate) => spawnSync(candidate, ["-V"], { stdio: "ignore" }).error === undefined)
    if (blkid === undefined) {
      console.warn("⚠⚠⚠ blkid is not installed: SKIPPING the blkid probe (apt-get install util-linux)")
      return
    }
    const out = run(blkid, ["-p", "-o", "export", isoPath]).stdout.toString()
    expect(out).toMatch(/^TYPE=iso9660$/m)
    expect(out).toMatch(/^LABEL=cidata$/m)
  })
})

describe("the seed ISO a VM gets", () => {
  it("holds user-data, meta-data and network-config readable by isoinfo", () => {
    const image = seedIsoBytes({ userData: "#cloud-config\n", metaData: "instance-id: a\nlocal-hostname: a\n", networkConfig: "version: 2\n" })
    if (image instanceof IsoBuildError) throw image
    const path = join(dir, "seed.iso")
    writeFileSync(path, image)
    if (!has("isoinfo")) return
    expect(run("isoinfo", ["-R", "-x", "/user-data", "-i", path]).stdout.toString()).toBe("#cloud-config\n")
    expect(run("isoinfo", ["-R", "-x", "/meta-data", "-i", path]).stdout.toString()).toBe("instance-id: a\nlocal-hostname: a\n")
    expect(run("isoinfo", ["-R", "-x", "/network-config", "-i", path]).stdout.toString()).toBe("version: 2\n")
  })
})

describe("ISOs made by real tools, read by our reader", () => {
  const source = join(dir, "src")
  mkdirSync(source, { recursive: true })
  writeFileSync(join(source, "user-data"), userData)
  writeFileSync(join(source, "meta-data"), metaData)
  writeFileSync(join(source, "payload.bin"), binary)

  const readBack = (path: string) => {
    const result = readIsoFiles(readFileSync(path))
    if (result instanceof IsoReadError) throw result
    return result
  }

  it.each([
    ["-R -J", ["-R", "-J"], ["meta-data", "payload.bin", "user-data"]],
    ["-J only", ["-J"], ["meta-data", "payload.bin", "user-data"]],
    ["neither (plain level-1 names)", [], ["meta_dat", "payload.bin", "user_dat"]]
  ])("genisoimage -V cidata %s", (_label, flags, names) => {
    if (!has("genisoimage")) return
    const path = join(dir, `genisoimage-${flags.join("")}.iso`)
    execFileSync("genisoimage", ["-quiet", "-V", "cidata", ...flags, "-o", path, source])
    const back = readBack(path)
    expect(back.volumeId).toBe("cidata")
    expect([...back.files.keys()].sort()).toEqual(names)
    const user = back.files.get(names[2] ?? "")
    expect(user && same(user, userData)).toBe(true)
    expect(same(back.files.get("payload.bin") ?? new Uint8Array(0), binary)).toBe(true)
  })

  it("xorriso -as mkisofs style image with Rock Ridge", () => {
    if (!has("xorriso")) return
    const path = join(dir, "xorriso.iso")
    run("xorriso", ["-outdev", path, "-volid", "cidata", "-joliet", "on", "-map", source, "/"])
    const back = readBack(path)
    expect(back.volumeId).toBe("cidata")
    expect(same(back.files.get("user-data") ?? new Uint8Array(0), userData)).toBe(true)
    expect(same(back.files.get("meta-data") ?? new Uint8Array(0), metaData)).toBe(true)
  })
})
