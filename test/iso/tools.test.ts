/**
 * Our ISO images checked by the tools Linux users and cloud-init rely on (isoinfo from genisoimage, xorriso,
 * blkid), and images made by genisoimage/xorriso read back by our reader. The tools run asynchronously, so the
 * worker's event loop keeps answering. Off CI, a machine without the tools skips these suites with one line
 * saying what to install (test/support/realComponents.ts); under CI a missing tool fails the run.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { buildIso, IsoReadError, readIsoFiles } from "../../src/domain/iso9660.js"
import { seedIsoBytes } from "../../src/layers/IsoBuilder9660.js"
import { IsoBuildError } from "../../src/services/IsoBuilder.js"
import { patternBytes } from "./bytes.js"
import { skipWithout } from "../support/skipWithout.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-iso-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const packageOf: Record<string, string> = { isoinfo: "genisoimage", genisoimage: "genisoimage", xorriso: "xorriso", blkid: "util-linux" }

/** Runs an external tool; fails (never skips) when it is not installed or exits non-zero. */
const run = (tool: string, args: ReadonlyArray<string>): Promise<{ stdout: Buffer; stderr: string }> =>
  new Promise((resolve, reject) => {
    execFile(tool, [...args], { encoding: "buffer", maxBuffer: 64 * 1024 * 1024, timeout: 20_000 }, (error, stdout, stderr) => {
      if (error === null) return resolve({ stdout, stderr: stderr.toString() })
      const name = tool.split("/").pop() ?? tool
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        return reject(new Error(`${tool} is not installed: this check needs it (apt-get install ${packageOf[name] ?? name})`))
      }
      reject(new Error(`${tool} ${args.join(" ")} exited ${String(error.code ?? error.signal)}: ${stderr.toString()}`))
    })
  })

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

describe.skipIf(skipWithout("iso-tools"))("our ISO as seen by isoinfo", () => {
  it("reports volume id cidata, 2048-byte blocks, Rock Ridge and Joliet", async () => {
    const out = (await run("isoinfo", ["-d", "-i", isoPath])).stdout.toString()
    expect(out).toMatch(/^Volume id: cidata$/m)
    expect(out).toMatch(/^Logical block size is: 2048$/m)
    expect(out).toMatch(/^Rock Ridge signatures version 1 found$/m)
    expect(out).toMatch(/^Joliet with UCS level 3 found$/m)
    expect(out).toMatch(new RegExp(`^Volume size is: ${readFileSync(isoPath).length / 2048}$`, "m"))
  })

  it.each([["-R"], ["-J"]])("lists the exact lowercase names with %s", async (flag) => {
    const out = (await run("isoinfo", [flag, "-l", "-i", isoPath])).stdout.toString()
    for (const file of files) expect(out).toMatch(new RegExp(` ${file.data.length} .*\\]  ${file.name.replace(".", "\\.")} *$`, "m"))
  })

  it("lists level-1 names in the primary tree", async () => {
    const out = (await run("isoinfo", ["-l", "-i", isoPath])).stdout.toString()
    expect(out).toContain("USER_DAT.;1")
    expect(out).toContain("META_DAT.;1")
  })

  it.each(files.map((f) => [f.name, f.data] as const))("extracts %s byte for byte (Rock Ridge and Joliet)", async (name, data) => {
    expect(same((await run("isoinfo", ["-R", "-x", `/${name}`, "-i", isoPath])).stdout, data)).toBe(true)
    expect(same((await run("isoinfo", ["-J", "-x", `/${name}`, "-i", isoPath])).stdout, data)).toBe(true)
  })
})

describe.skipIf(skipWithout("iso-tools"))("our ISO as seen by xorriso", () => {
  it("loads it with volume id cidata, lists the names, and shows Rock Ridge permissions", async () => {
    const { stdout, stderr } = await run("xorriso", ["-indev", isoPath, "-pvd_info", "-ls", "/", "--", "-lsdl", "/user-data", "--"])
    const out = stdout.toString()
    expect(out).toMatch(/^Volume Id\s*: cidata$/m)
    expect(stderr).not.toMatch(/SORRY|FAILURE|WARNING/)
    const names = out.split("\n").filter((l) => l.startsWith("'")).map((l) => l.slice(1, -1)).sort()
    expect(names).toEqual(files.map((f) => f.name).sort())
    // Mode r--r--r-- comes from our PX entry; without Rock Ridge xorriso would invent its own.
    expect(out).toMatch(/^-r--r--r-- .* '\/user-data'$/m)
  })

  it("extracts every file byte for byte", async () => {
    const out = join(dir, "extracted")
    const { stderr } = await run("xorriso", ["-osirrox", "on", "-indev", isoPath, "-extract", "/", out])
    expect(stderr).not.toMatch(/SORRY|FAILURE|WARNING/)
    for (const file of files) expect(same(readFileSync(join(out, file.name)), file.data)).toBe(true)
  })

  it("reads the Joliet tree when Rock Ridge is switched off", async () => {
    const { stdout } = await run("xorriso", ["-rockridge", "off", "-indev", isoPath, "-ls", "/"])
    expect(stdout.toString()).toContain("'user-data'")
    expect(stdout.toString()).toContain("'meta-data'")
  })
})

describe.skipIf(skipWithout("iso-tools"))("our ISO as seen by blkid (how cloud-init's NoCloud finds its seed: TYPE=iso9660, LABEL=cidata)", () => {
  it("probes as an iso9660 filesystem labelled cidata", async () => {
    // blkid lives in /usr/sbin or /sbin, which are not on every user's PATH.
    const blkid = existsSync("/usr/sbin/blkid") ? "/usr/sbin/blkid" : existsSync("/sbin/blkid") ? "/sbin/blkid" : "blkid"
    const out = (await run(blkid, ["-p", "-o", "export", isoPath])).stdout.toString()
    expect(out).toMatch(/^TYPE=iso9660$/m)
    expect(out).toMatch(/^LABEL=cidata$/m)
  })
})

describe.skipIf(skipWithout("iso-tools"))("the seed ISO a VM gets", () => {
  it("holds user-data, meta-data and network-config readable by isoinfo", async () => {
    const image = seedIsoBytes({ userData: "#cloud-config\n", metaData: "instance-id: a\nlocal-hostname: a\n", networkConfig: "version: 2\n" })
    if (image instanceof IsoBuildError) throw image
    const path = join(dir, "seed.iso")
    writeFileSync(path, image)
    expect((await run("isoinfo", ["-R", "-x", "/user-data", "-i", path])).stdout.toString()).toBe("#cloud-config\n")
    expect((await run("isoinfo", ["-R", "-x", "/meta-data", "-i", path])).stdout.toString()).toBe("instance-id: a\nlocal-hostname: a\n")
    expect((await run("isoinfo", ["-R", "-x", "/network-config", "-i", path])).stdout.toString()).toBe("version: 2\n")
  })
})

describe.skipIf(skipWithout("iso-tools"))("ISOs made by real tools, read by our reader", () => {
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
  ])("genisoimage -V cidata %s", async (_label, flags, names) => {
    const path = join(dir, `genisoimage-${flags.join("")}.iso`)
    await run("genisoimage", ["-quiet", "-V", "cidata", ...flags, "-o", path, source])
    const back = readBack(path)
    expect(back.volumeId).toBe("cidata")
    expect([...back.files.keys()].sort()).toEqual(names)
    const user = back.files.get(names[2] ?? "")
    expect(user && same(user, userData)).toBe(true)
    expect(same(back.files.get("payload.bin") ?? new Uint8Array(0), binary)).toBe(true)
  })

  it("xorriso -as mkisofs style image with Rock Ridge", async () => {
    const path = join(dir, "xorriso.iso")
    await run("xorriso", ["-outdev", path, "-volid", "cidata", "-joliet", "on", "-map", source, "/"])
    const back = readBack(path)
    expect(back.volumeId).toBe("cidata")
    expect(same(back.files.get("user-data") ?? new Uint8Array(0), userData)).toBe(true)
    expect(same(back.files.get("meta-data") ?? new Uint8Array(0), metaData)).toBe(true)
  })
})
