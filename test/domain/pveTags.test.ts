import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import {
  associationTags,
  hasAssociationTags,
  isValidPveTag,
  mergePveTags,
  parsePveTags,
  toPveTag
} from "../../src/domain/pveTags.js"

describe("PVE association tags", () => {
  it("are nstance, cluster and shard, in that order", () => {
    expect(associationTags("example-cluster", "dev-1")).toEqual(["nstance", "example-cluster", "dev-1"])
  })

  it("collapse duplicates (a shard named like the cluster)", () => {
    expect(associationTags("prod", "prod")).toEqual(["nstance", "prod"])
  })

  it.each([
    ["Example-Cluster", "example-cluster"],
    ["eu west/1", "eu-west-1"],
    ["-edge", "_-edge"],
    ["a.b+c_d", "a.b+c_d"],
    ["", "_"]
  ])("maps %j onto the valid tag %j", (input, tag) => {
    expect(toPveTag(input)).toBe(tag)
    expect(isValidPveTag(tag)).toBe(true)
  })

  it.prop("always yields a valid PVE tag", [FastCheck.string({ maxLength: 40 })], ([value]) => {
    expect(isValidPveTag(toPveTag(value))).toBe(true)
  })

  it("parses every separator PVE accepts and drops empty entries", () => {
    expect(parsePveTags(";nstance;;prod,dev-1 other")).toEqual(["nstance", "prod", "dev-1", "other"])
    expect(parsePveTags(undefined)).toEqual([])
  })

  it("merges without a leading separator and keeps the VM's existing tags first", () => {
    expect(mergePveTags("", associationTags("c", "s"))).toBe("nstance;c;s")
    expect(mergePveTags(undefined, ["nstance"])).toBe("nstance")
    expect(mergePveTags("backup;NSTANCE", associationTags("c", "s"))).toBe("backup;NSTANCE;c;s")
  })

  it("recognises a VM of this cluster and shard only", () => {
    expect(hasAssociationTags("c;nstance;s;extra", "c", "s")).toBe(true)
    expect(hasAssociationTags("nstance;c", "c", "s")).toBe(false)
    expect(hasAssociationTags("nstance;c;other", "c", "s")).toBe(false)
    expect(hasAssociationTags(undefined, "c", "s")).toBe(false)
  })
})
