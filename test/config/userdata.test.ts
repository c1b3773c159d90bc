/**
 * Issue 22: user-data and args are Go templates. The validator (`nstance-server --validate`, `nstance-admin
 * config push`) refuses a template that does not parse, naming the field and the line and column; inline
 * user-data decodes in all its encodings; a `source: "url"` must be an http(s) URL. At create time the data
 * is the original's (`.Cluster`, `.Server`, `.Provider`, `.Instance`, `.Vars` merged defaults → template →
 * group, `.Image`, `.Nonce`) and every string leaf of the args is rendered.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { gzipSync } from "node:zlib"
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { serverCommand } from "../../src/cli/server.js"
import { vmSpecFor } from "../../src/domain/config/index.js"
import { decodeUserData, MAX_USERDATA_BYTES, parseUserDataUrl, redactedUrl } from "../../src/domain/config/userdata.js"
import { renderArgs, renderUserDataText, templateData, withRenderedArgs } from "../../src/domain/shard/templateData.js"
import { runCommand } from "../support/cli.js"
import { configProblems, parsedConfig, shardSection } from "../support/shardConfigJson.js"

type Json = Record<string, unknown>

const base = () => ({
  cluster: { id: "acme" } as Json,
  shard: shardSection() as Json,
  defaults: { args: { StoragePool: "local-lvm", TemplateName: "debian-13-template", Cores: 1, Memory: 512 } as Json, vars: { Env: "prod", Tier: "default" } } as Json,
  templates: { web: { kind: "web", subnet_pool: "default", instance_type: "cpu:2", vars: { Tier: "web" } } as Json } as Json,
  groups: { shop: { web: { template: "web", size: 2, vars: { Color: "blue" } } as Json } as Json } as Json
})

const ok = parsedConfig
const problems = configProblems
const withUserdata = (userdata: Json) => {
  const c = base()
  ;(c.templates["web"] as Json)["userdata"] = userdata
  return c
}
const b64 = (text: string) => Buffer.from(text).toString("base64")
const b64gzip = (text: string) => gzipSync(Buffer.from(text)).toString("base64")

describe("validation: templates that do not parse are refused, naming field and position", () => {
  it("inline user-data (plain)", () => {
    expect(problems(withUserdata({ content: "#!/bin/sh\necho {{ .Instance.ID }\n" }))).toEqual([
      "templates.web.userdata.content: is not a valid template: line 2, column 22: unexpected \"}\" in operand"
    ])
  })

  it("inline user-data (base64+gzip): the position is in the decoded text", () => {
    expect(problems(withUserdata({ encoding: "base64+gzip", content: b64gzip("#cloud-config\n\nruncmd:\n  - {{ if .Vars.Env }}x\n") }))).toEqual([
      "templates.web.userdata.content: is not a valid template: line 5, column 1: unexpected EOF"
    ])
  })

  it("defaults.userdata, with an unknown function", () => {
    const c = base()
    c.defaults["userdata"] = { encoding: "base64", content: b64("echo {{ upper .Vars.Env }}") }
    expect(problems(c)).toEqual(["defaults.userdata.content: is not a valid template: line 1, column 9: function \"upper\" not defined"])
  })

  it("every string leaf of args, in objects and arrays, at every level", () => {
    const c = base()
    c.defaults["args"] = { ...(c.defaults["args"] as Json), Extra: { Tags: ["ok", "{{ .Vars.Env "] } }
    ;(c.templates["web"] as Json)["args"] = { Pool: "{{ end }}" }
    ;(c.groups["shop"] as Json)["web"] = { template: "web", size: 1, args: { Note: "{{ $nope }}" } }
    expect(problems(c)).toEqual([
      "defaults.args.Extra.Tags[1]: is not a valid template: line 1, column 1: unclosed action",
      "templates.web.args.Pool: is not a valid template: line 1, column 4: unexpected {{end}}",
      "groups.shop.web.args.Note: is not a valid template: line 1, column 4: undefined variable \"$nope\""
    ])
  })

  it("a templated Proxmox arg is judged once rendered, not as written", () => {
    const c = base()
    ;(c.groups["shop"] as Json)["web"] = { template: "web", size: 1, args: { Pool: "pool-{{ .Vars.Color }}", StoragePool: "{{ .Vars.Store }}" } }
    expect(problems(c)).toEqual([])
  })

  it("nstance-server --validate prints the problem and exits 1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nstance-userdata-"))
    try {
      const file = join(dir, "config.json")
      writeFileSync(file, JSON.stringify(withUserdata({ content: "a\n{{ nope }}" })))
      const result = await runCommand(serverCommand, "nstance-server", ["--validate", file], { env: {} })
      expect(result.status).toBe(1)
      expect(result.stderr.trim().split("\n")[0]).toBe("✗ templates.web.userdata.content: is not a valid template: line 2, column 4: function \"nope\" not defined")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("validation: encodings and sources", () => {
  const text = "#!/bin/sh\necho {{ .Vars.Env }}\n"

  it.each([
    ["plain", { content: text }],
    ["base64", { encoding: "base64", content: b64(text) }],
    ["base64 with line breaks", { encoding: "base64", content: b64(text).replace(/(.{8})/g, "$1\n") }],
    ["base64+gzip", { encoding: "base64+gzip", content: b64gzip(text) }],
    ["url (any encoding; fetched at create time)", { source: "url", encoding: "gzip", content: "https://example.com/user-data.gz" }]
  ])("%s is accepted", (_name, userdata) => {
    expect(problems(withUserdata(userdata))).toEqual([])
  })

  it.each([
    ["inline gzip", { encoding: "gzip", content: "H4sI" }, "templates.web.userdata.encoding: gzip is only allowed with source url (inline content is text; use base64+gzip)"],
    ["bad base64", { encoding: "base64", content: "not base64!" }, "templates.web.userdata.content: is not base64 (the standard alphabet, padded with '=')"],
    ["base64 that is not gzip", { encoding: "base64+gzip", content: b64("plain") }, /^templates\.web\.userdata\.content: is not gzip data \(/],
    ["too large once decoded", { encoding: "base64+gzip", content: b64gzip("x".repeat(MAX_USERDATA_BYTES + 1)) }, "templates.web.userdata.content: decompresses to more than 64 KiB"],
    ["not UTF-8", { encoding: "base64", content: Buffer.from([0xff, 0xfe, 0x41]).toString("base64") }, "templates.web.userdata.content: does not decode to UTF-8 text (base64)"],
    ["a URL that is not one", { source: "url", content: "example.com/u" }, "templates.web.userdata.content: \"example.com/u\" is not a URL; with source \"url\" the content is an http:// or https:// URL"],
    ["a file URL", { source: "url", content: "file:///etc/passwd" }, "templates.web.userdata.content: must be an http:// or https:// URL (got file:)"],
    ["credentials in the URL", { source: "url", content: "https://u:p@example.com/x" }, "templates.web.userdata.content: must not carry credentials (user:password@); serve it without, or put a token in the path"]
  ])("%s is refused", (_name, userdata, expected) => {
    const found = problems(withUserdata(userdata))
    expect(found).toHaveLength(1)
    if (typeof expected === "string") expect(found[0]).toBe(expected)
    else expect(found[0]).toMatch(expected)
  })

  it("decodes fetched bodies in all four encodings", () => {
    const bytes = new TextEncoder().encode(text)
    expect(decodeUserData("plain", bytes)).toEqual(Either.right(text))
    expect(decodeUserData("base64", new TextEncoder().encode(b64(text)))).toEqual(Either.right(text))
    expect(decodeUserData("gzip", new Uint8Array(gzipSync(bytes)))).toEqual(Either.right(text))
    expect(decodeUserData("base64+gzip", new TextEncoder().encode(b64gzip(text)))).toEqual(Either.right(text))
  })

  it("a URL is logged without its query (it may carry a token)", () => {
    expect(redactedUrl(Either.getOrThrow(parseUserDataUrl("https://h.example/a/b?X-Amz-Signature=secret")))).toBe("https://h.example/a/b?…")
    expect(redactedUrl(Either.getOrThrow(parseUserDataUrl("http://127.0.0.1:8080/u")))).toBe("http://127.0.0.1:8080/u")
  })
})

describe("template data and rendering at create time", () => {
  const config = ok(base()).config
  const group = config.groups["shop"]!["web"]!
  const inputs = {
    config,
    group,
    instanceId: "web06dx9xy919t3v9kzd2xdsyzb3g",
    nonce: "nonce-jwt",
    caPem: "-----BEGIN CERTIFICATE-----\n",
    server: { registrationAddr: "10.0.0.1:8992", agentAddr: "10.0.0.1:8994", operatorAddr: "10.0.0.1:8993" }
  }

  it("is the original's data; vars merge defaults → template → group", () => {
    expect(templateData(inputs)).toEqual({
      Cluster: { ID: "acme", CACert: "-----BEGIN CERTIFICATE-----\n" },
      Server: { Shard: "pve-a", RegistrationAddr: "10.0.0.1:8992", AgentAddr: "10.0.0.1:8994", OperatorAddr: "10.0.0.1:8993" },
      Provider: { Kind: "proxmox", Region: "dc1", Zone: "a" },
      Instance: { ID: "web06dx9xy919t3v9kzd2xdsyzb3g", Kind: "web", Arch: "amd64", Type: "cpu:2" },
      Vars: { Env: "prod", Tier: "web", Color: "blue" },
      Image: {},
      Nonce: "nonce-jwt"
    })
  })

  it("renders user-data with every field, a missing one as \"\"", () => {
    const text = "{{ .Cluster.ID }} {{ .Server.Shard }} {{ .Server.RegistrationAddr }} {{ .Provider.Kind }}/{{ .Provider.Region }}/{{ .Provider.Zone }} " +
      "{{ .Instance.ID }} {{ .Instance.Kind }} {{ .Instance.Type }} {{ .Vars.Tier }} {{ .Nonce }} [{{ .Vars.Missing }}][{{ .Image.debian }}]"
    expect(renderUserDataText(text, templateData(inputs))).toEqual(Either.right(
      "acme pve-a 10.0.0.1:8992 proxmox/dc1/a web06dx9xy919t3v9kzd2xdsyzb3g web cpu:2 web nonce-jwt [][]"
    ))
  })

  it("a render error says where, prefixed so the create's step error is clear", () => {
    expect(renderUserDataText("ok\n{{ .Vars.Env.X }}", templateData(inputs))).toEqual(Either.left(
      "user-data template: line 2, column 4: executing <.Vars.Env.X>: can't evaluate field X in type string"
    ))
  })

  it("renders every string leaf of args; other values pass through", () => {
    const args = { Pool: "p-{{ .Vars.Color }}", Cores: 2, On: true, Nested: { List: ["{{ .Instance.Kind }}", 3, { Deep: "{{ .Vars.Env }}" }] }, Plain: "x" }
    expect(renderArgs("groups.shop.web.args", args, templateData(inputs))).toEqual(Either.right({
      Pool: "p-blue", Cores: 2, On: true, Nested: { List: ["web", 3, { Deep: "prod" }] }, Plain: "x"
    }))
  })

  it("the VM spec comes from the rendered args, and a rendered Proxmox arg must be valid", () => {
    const c = base()
    ;(c.groups["shop"] as Json)["web"] = { template: "web", size: 1, vars: { Color: "blue" }, args: { Pool: "pool-{{ .Vars.Color }}", StoragePool: "{{ .Vars.Store }}" } }
    const parsed = ok(c).config
    const g = parsed.groups["shop"]!["web"]!
    const data = templateData({ ...inputs, config: parsed, group: g, nonce: "" })
    // `.Vars.Store` is missing: StoragePool renders to "", which no storage is called.
    expect(withRenderedArgs(parsed, g, data)).toEqual(Either.left(
      "groups.shop.web.args.StoragePool: renders to \"\"; must be a PVE storage ID such as \"local-lvm\" (letters, digits, '-', '_', '.')"
    ))
    const withStore = { ...data, Vars: { ...(data["Vars"] as Json), Store: "ceph-vm" } } as typeof data
    const rendered = Either.getOrThrow(withRenderedArgs(parsed, g, withStore))
    expect(Either.getOrThrow(vmSpecFor(rendered, "shop", "web"))).toMatchObject({ storagePool: "ceph-vm", pool: "pool-blue" })
    // The config itself is unchanged.
    expect(parsed.groups["shop"]!["web"]!.args).toEqual({ Pool: "pool-{{ .Vars.Color }}", StoragePool: "{{ .Vars.Store }}" })
  })
})
