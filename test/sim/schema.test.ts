import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { loadApiSchema, validateParams, type Endpoint } from "../../src/sim/schema.js"
import { resolveSchemaPath } from "../../src/sim/server.js"

const schema = loadApiSchema(resolveSchemaPath())

const endpoint = (method: string, path: string): Endpoint => {
  const m = schema.match(method, path)
  if (m === undefined || "methodNotAllowed" in m) throw new Error(`no endpoint for ${method} ${path}`)
  return m.endpoint
}

const clone = endpoint("POST", "/nodes/pve1/qemu/9000/clone")
const config = endpoint("POST", "/nodes/pve1/qemu/100/config")
const resize = endpoint("PUT", "/nodes/pve1/qemu/100/resize")
const resources = endpoint("GET", "/cluster/resources")

const errorsOf = (e: Endpoint, input: Record<string, unknown>) => {
  const r = validateParams(e, input)
  return "errors" in r ? r.errors : undefined
}

describe("path matching", () => {
  it("finds endpoints by template and decodes path parameters", () => {
    const m = schema.match("GET", "/nodes/pve2/storage/local/content/local%3Aiso%2Fseed.iso")
    expect(m !== undefined && "endpoint" in m ? m.pathParams : undefined).toEqual({ node: "pve2", storage: "local", volume: "local:iso/seed.iso" })
  })

  it("accepts an unencoded volume id with a slash, as go-proxmox sends it", () => {
    const m = schema.match("GET", "/nodes/pve2/storage/local/content/local:iso/seed.iso")
    expect(m !== undefined && "endpoint" in m ? m.pathParams["volume"] : undefined).toBe("local:iso/seed.iso")
  })

  it("tells a wrong method apart from an unknown path", () => {
    expect(schema.match("DELETE", "/cluster/resources")).toEqual({ methodNotAllowed: true })
    expect(schema.match("GET", "/cluster/nope")).toBeUndefined()
  })

  it("has the synchronous PUT config variant without background_delay", () => {
    const put = endpoint("PUT", "/nodes/pve1/qemu/100/config")
    expect(put.properties["cores"]).toBeDefined()
    expect(put.properties["background_delay"]).toBeUndefined()
  })
})

describe("parameter checking as pveproxy does it", () => {
  const base = { node: "pve1", vmid: "9000" }

  it.each([
    ["an unknown parameter", clone, { ...base, newid: "100", bogus: "1" }, "bogus", "property is not defined in schema and the schema does not allow additional properties"],
    ["a missing required parameter", clone, base, "newid", "property is missing and it is not optional"],
    ["a non-integer", clone, { ...base, newid: "abc" }, "newid", "type check ('integer') failed - got 'abc'"],
    ["a float for an integer", clone, { ...base, newid: 100.5 }, "newid", "type check ('integer') failed - got '100.5'"],
    ["an integer below the minimum", clone, { ...base, newid: "99" }, "newid", "value must have a minimum value of 100"],
    ["an integer above the maximum", clone, { ...base, newid: "1000000000" }, "newid", "value must have a maximum value of 999999999"],
    ["a bad boolean", clone, { ...base, newid: "100", full: "maybe" }, "full", "type check ('boolean') failed - got 'maybe'"],
    ["a value outside the enum", resources, { type: "vms" }, "type", "value 'vms' does not have a value in the enumeration 'vm, storage, node, sdn'"],
    ["a pattern violation", resize, { node: "pve1", vmid: "100", disk: "scsi0", size: "10 GB" }, "size", "value does not match the regex pattern"],
    ["a bad DNS name", clone, { ...base, newid: "100", name: "web_1" }, "name", "invalid format - value does not look like a valid DNS name"],
    ["a bad node name", clone, { ...base, node: "pve 1", newid: "100" }, "node", "invalid format - value does not look like a valid node name"],
    ["a bad tag", config, { node: "pve1", vmid: "100", tags: "ok;not ok!" }, "tags", "invalid format - invalid tag 'ok!'"],
    ["a too long description", config, { node: "pve1", vmid: "100", description: "x".repeat(8193) }, "description", "value may only be 8192 characters long"],
    ["an index beyond the device range", config, { node: "pve1", vmid: "100", ide4: "none,media=cdrom" }, "ide4", "property is not defined in schema and the schema does not allow additional properties"]
  ] as const)("rejects %s", (_label, e, input, param, message) => {
    expect(errorsOf(e, input)?.[param]).toBe(message)
  })

  it("reports every bad parameter at once", () => {
    expect(Object.keys(errorsOf(clone, { node: "pve1", vmid: "x", bogus: 1 }) ?? {}).sort()).toEqual(["bogus", "newid", "vmid"])
  })

  it("checks property strings key by key", () => {
    expect(errorsOf(config, { node: "pve1", vmid: "100", net0: "virtio,bridge=vmbr0,tag=0" })?.["net0"])
      .toBe("invalid format - format error\nnet0.tag: value must have a minimum value of 1\n")
    expect(errorsOf(config, { node: "pve1", vmid: "100", net0: "virtio,bridge=vmbr0,colour=red" })?.["net0"])
      .toContain("net0.colour: property is not defined in schema")
    expect(errorsOf(config, { node: "pve1", vmid: "100", net0: "bridge=vmbr0" })?.["net0"])
      .toContain("net0.model: property is missing and it is not optional")
    expect(errorsOf(config, { node: "pve1", vmid: "100", memory: "lots" })?.["memory"])
      .toContain("memory.current: type check ('integer') failed - got 'lots'")
  })

  it.each([
    ["form strings for integers and booleans", { node: "pve1", vmid: "100", cores: "4", onboot: "1" }],
    ["JSON numbers and booleans", { node: "pve1", vmid: 100, cores: 4, onboot: true }],
    ["PVE's boolean words", { node: "pve1", vmid: "100", onboot: "yes" }],
    ["a model=MAC net device", { node: "pve1", vmid: "100", net0: "virtio=BC:24:11:2E:C5:4A,bridge=vmbr0,tag=10" }],
    ["a cloud-init ISO on ide2", { node: "pve1", vmid: "100", ide2: "local:iso/user-data-100.iso,media=cdrom", boot: "order=scsi0;ide2" }],
    ["a leading-separator tag list", { node: "pve1", vmid: "100", tags: ";nstance;cluster-a" }],
    ["memory with current=", { node: "pve1", vmid: "100", memory: "current=2048" }]
  ] as const)("accepts %s", (_label, input) => {
    expect(errorsOf(config, input)).toBeUndefined()
  })

  it("normalises booleans to 1/0 for the handlers", () => {
    const r = validateParams(config, { node: "pve1", vmid: 100, onboot: true, template: "off" })
    expect("params" in r ? [r.params["onboot"], r.params["template"], r.params["vmid"]] : undefined).toEqual(["1", "0", "100"])
  })

  it.prop("accepts exactly the VMIDs 100..999999999", [FastCheck.integer({ min: -10, max: 2_000_000_000 })], ([vmid]) => {
    const ok = errorsOf(clone, { node: "pve1", vmid: String(vmid), newid: "100" }) === undefined
    expect(ok).toBe(vmid >= 100 && vmid <= 999_999_999)
  })
})

describe("without its schema the simulator does not start", () => {
  it("a missing schema file: startSimulator rejects naming the file, no port is served", async () => {
    const { startSimulator } = await import("../../src/sim/server.js")
    await expect(startSimulator({ http: true, schemaPath: "/nonexistent/schema.json" }))
      .rejects.toThrow(/cannot read PVE API schema \/nonexistent\/schema\.json/)
  })

  it("an unreadable or malformed schema file is refused the same way", async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs")
    const { tmpdir } = await import("node:os")
    const { join } = await import("node:path")
    const { startSimulator } = await import("../../src/sim/server.js")
    const dir = mkdtempSync(join(tmpdir(), "nstance-schema-"))
    writeFileSync(join(dir, "garbage.json"), "{ not json")
    writeFileSync(join(dir, "wrong.json"), JSON.stringify({ "GET /version": { method: "FETCH" } }))
    await expect(startSimulator({ http: true, schemaPath: join(dir, "garbage.json") })).rejects.toThrow(/garbage\.json is not JSON/)
    await expect(startSimulator({ http: true, schemaPath: join(dir, "wrong.json") })).rejects.toThrow(/wrong\.json: PVE API schema does not decode/)
  })

  it("nstance-pve-sim with NSTANCE_PVE_SCHEMA pointing nowhere: one line naming the file, exit 1", async () => {
    const { runBin } = await import("../support/spawn.js")
    const result = await runBin("nstance-pve-sim", ["--port", "0"], { env: { ...process.env, NO_COLOR: "1", NSTANCE_PVE_SCHEMA: "/nonexistent/schema.json" } })
    expect(result.status).toBe(1)
    expect(result.stdout).not.toContain("listening")
    const lines = result.stderr.trim().split("\n")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^✗ cannot start simulator: cannot read PVE API schema \/nonexistent\/schema\.json/)
  })

  it("the embedded daemon (npm start) with NSTANCE_PVE_SCHEMA pointing nowhere: one line, exit 1", async () => {
    const { runBin } = await import("../support/spawn.js")
    const result = await runBin("nstance-server", ["--embedded"], { env: { ...process.env, NO_COLOR: "1", NSTANCE_PVE_SCHEMA: "/nonexistent/schema.json" } })
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toMatch(/^✗ cannot start the Proxmox VE simulator: cannot read PVE API schema \/nonexistent\/schema\.json[^\n]*$/)
  })

  it("the repository carries the schema, with its source and commit", async () => {
    const { readFileSync } = await import("node:fs")
    const { BUNDLED_SCHEMA_PATH } = await import("../../src/sim/server.js")
    expect(resolveSchemaPath()).toBe(BUNDLED_SCHEMA_PATH)
    const source: unknown = JSON.parse(readFileSync(BUNDLED_SCHEMA_PATH.replace(/schema\.json$/, "source.json"), "utf8"))
    expect(source).toMatchObject({
      repository: "https://github.com/proxmox/pve-docs", path: "api-viewer/apidata.js", commit: expect.stringMatching(/^[0-9a-f]{40}$/)
    })
    expect(schema.endpoints.map((e) => `${e.method} ${e.path}`)).toContain("PUT /nodes/{node}/qemu/{vmid}/config")
  })
})
