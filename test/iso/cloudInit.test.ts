import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck } from "effect"
import { cloudInitSeed, InvalidCloudInitInput, metaDataFor, normaliseUserData } from "../../src/domain/cloudInit.js"
import { IsoReadError, readIsoFiles } from "../../src/domain/iso9660.js"
import { IsoBuilder9660 } from "../../src/layers/IsoBuilder9660.js"
import { IsoBuilder } from "../../src/services/IsoBuilder.js"

const ID = "web06dx9xy919t3v9kzd2xdsyzb3g"
const dec = new TextDecoder()

describe("cloud-init meta-data", () => {
  it("is exactly the NoCloud two-key document", () => {
    expect(metaDataFor(ID, ID)).toBe(`instance-id: ${ID}\nlocal-hostname: ${ID}\n`)
    expect(metaDataFor(ID, "web-1")).toBe(`instance-id: ${ID}\nlocal-hostname: web-1\n`)
  })

  it("quotes values YAML would otherwise read as something else", () => {
    expect(metaDataFor("i: x # y", "web")).toBe(`instance-id: "i: x # y"\nlocal-hostname: web\n`)
    expect(metaDataFor("123", "web")).toBe(`instance-id: "123"\nlocal-hostname: web\n`)
    expect(metaDataFor("yes", "web")).toBe(`instance-id: "yes"\nlocal-hostname: web\n`)
    // A digit-only DNS label is valid but would be a YAML integer.
    expect(metaDataFor(ID, "1234")).toBe(`instance-id: ${ID}\nlocal-hostname: "1234"\n`)
  })

  it.each([
    ["an empty instance id", "", "web", "instance-id"],
    ["a blank instance id", "   ", "web", "instance-id"],
    ["a newline in the instance id", "a\nlocal-hostname: evil", "web", "instance-id"],
    ["an underscore in the hostname", ID, "web_1", "local-hostname"],
    ["a dot in the hostname", ID, "web.example", "local-hostname"],
    ["a leading hyphen", ID, "-web", "local-hostname"],
    ["a 64-character hostname", ID, "a".repeat(64), "local-hostname"],
    ["an empty hostname", ID, "", "local-hostname"]
  ])("refuses %s", (_label, id, host, field) => {
    const result = metaDataFor(id, host)
    expect(result).toBeInstanceOf(InvalidCloudInitInput)
    expect((result as InvalidCloudInitInput).field).toBe(field)
    expect((result as InvalidCloudInitInput).message).toMatch(new RegExp(`^invalid cloud-init ${field}: `))
  })

  it.prop("never lets an instance id add a line", [FastCheck.string({ minLength: 1, maxLength: 40 })], ([id]) => {
    const result = metaDataFor(id, "web")
    if (result instanceof InvalidCloudInitInput) return
    expect(result.split("\n")).toHaveLength(3)
  })
})

describe("user-data normalisation", () => {
  it.each([
    ["#cloud-config\npackages: [nginx]\n", "#cloud-config\npackages: [nginx]\n"],
    ["#!/bin/sh\necho hi\n", "#!/bin/sh\necho hi\n"],
    ["  \n#cloud-config\n", "  \n#cloud-config\n"],
    ["echo hi\n", "#!/bin/bash\necho hi\n"],
    ["  echo hi", "#!/bin/bash\n  echo hi"],
    ["#include https://example.invalid/x\n", "#!/bin/bash\n#include https://example.invalid/x\n"],
    ["", "#!/bin/bash\n"]
  ])("%j becomes %j", (input, expected) => {
    expect(normaliseUserData(input)).toBe(expected)
  })

  it("builds the whole seed, hostname defaulting to the instance id", () => {
    expect(cloudInitSeed({ instanceId: ID, userData: "echo hi" })).toEqual({
      userData: "#!/bin/bash\necho hi",
      metaData: `instance-id: ${ID}\nlocal-hostname: ${ID}\n`
    })
    expect(cloudInitSeed({ instanceId: ID, userData: "#cloud-config\n", networkConfig: "version: 2\n" })).toMatchObject({
      networkConfig: "version: 2\n"
    })
    expect(cloudInitSeed({ instanceId: "", userData: "" })).toBeInstanceOf(InvalidCloudInitInput)
  })
})

describe("IsoBuilder (ISO 9660 layer)", () => {
  it.effect("builds a cidata image holding the seed files verbatim", () =>
    Effect.gen(function* () {
      const builder = yield* IsoBuilder
      const image = yield* builder.build({ userData: "#cloud-config\n", metaData: `instance-id: ${ID}\nlocal-hostname: ${ID}\n` })
      const back = readIsoFiles(image)
      if (back instanceof IsoReadError) throw back
      expect(back.volumeId).toBe("cidata")
      expect([...back.files.keys()].sort()).toEqual(["meta-data", "user-data"])
      expect(dec.decode(back.files.get("user-data"))).toBe("#cloud-config\n")
      const again = yield* builder.build({ userData: "#cloud-config\n", metaData: `instance-id: ${ID}\nlocal-hostname: ${ID}\n` })
      expect(Buffer.from(again).equals(Buffer.from(image))).toBe(true)
      const withNetwork = yield* builder.build({ userData: "x", metaData: "y", networkConfig: "version: 2\n" })
      const net = readIsoFiles(withNetwork)
      if (net instanceof IsoReadError) throw net
      expect(dec.decode(net.files.get("network-config"))).toBe("version: 2\n")
    }).pipe(Effect.provide(IsoBuilder9660)))
})
