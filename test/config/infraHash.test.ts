import { createHash } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { goJson, infraHash, infraJson } from "../../src/domain/config/infraHash.js"

describe("the original server's infra hash", () => {
  it("is SHA-256 over Go's JSON of the struct: fields in declaration order, map keys sorted, HTML characters escaped", () => {
    const inputs = {
      args: { TemplateVMID: 9000, StoragePool: "local-lvm", Net: { Bridge: "vmbr0", Tags: ["a<b", "c&d"] }, Ratio: 0.5, Big: 1e21, Tiny: 1e-7 },
      instanceType: "cpu:2,memory:2048",
      subnetPool: "",
      userdata: { content: "#!/bin/sh\necho <hi> & bye\u2028" },
      kind: "web",
      arch: ""
    }
    const expected =
      `{"args":{"Big":1e+21,"Net":{"Bridge":"vmbr0","Tags":["a\\u003cb","c\\u0026d"]},"Ratio":0.5,"StoragePool":"local-lvm","TemplateVMID":9000,"Tiny":1e-7},` +
      `"instance_type":"cpu:2,memory:2048","subnet_pool":"","userdata":{"content":"#!/bin/sh\\necho \\u003chi\\u003e \\u0026 bye\\u2028"},"kind":"web","arch":""}`
    expect(infraJson(inputs)).toBe(expected)
    expect(infraHash(inputs)).toBe(`sha256:${createHash("sha256").update(expected).digest("hex")}`)
  })

  it("omits absent user-data, and an absent source or encoding inside it", () => {
    const base = { args: {}, instanceType: "", subnetPool: "edge", kind: "dbs", arch: "arm64" }
    expect(infraJson(base)).toBe(`{"args":{},"instance_type":"","subnet_pool":"edge","kind":"dbs","arch":"arm64"}`)
    expect(infraJson({ ...base, userdata: { source: "url", encoding: "gzip", content: "https://x/y" } })).toContain(
      `"userdata":{"source":"url","encoding":"gzip","content":"https://x/y"}`
    )
  })

  it("changes with what a VM is built from, and with nothing else", () => {
    const base = { args: { Cores: 1 }, instanceType: "t", subnetPool: "p", userdata: { content: "a" }, kind: "web", arch: "" }
    const hash = infraHash(base)
    for (const changed of [{ ...base, args: { Cores: 2 } }, { ...base, instanceType: "u" }, { ...base, subnetPool: "q" }, { ...base, userdata: { content: "b" } }, { ...base, kind: "api" }]) {
      expect(infraHash(changed)).not.toBe(hash)
    }
    // Key order in the config does not matter.
    expect(infraHash({ ...base, args: { B: 1, A: 2 } })).toBe(infraHash({ ...base, args: { A: 2, B: 1 } }))
    expect(goJson({ b: [true, null], a: "x" })).toBe(`{"a":"x","b":[true,null]}`)
  })
})
