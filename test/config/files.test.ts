import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Duration } from "effect"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { serverCommand } from "../../src/cli/server.js"
import { formatProblem } from "../../src/domain/config/index.js"
import { runCommand } from "../support/cli.js"
import { configProblems, parsedConfig, shardSection } from "../support/shardConfigJson.js"

const base = (files: Record<string, unknown>, extra: { certificates?: unknown; secrets?: unknown; groupVars?: Record<string, string> } = {}) => ({
  cluster: { id: "acme", ...(extra.secrets === undefined ? {} : { secrets: extra.secrets }) },
  shard: shardSection(),
  defaults: { args: { StoragePool: "local-lvm", TemplateName: "debian-13-template", Cores: 1, Memory: 1024 }, vars: { Env: "prod" } },
  certificates: extra.certificates ?? { "web.server": { kind: "server", cn: "{{ .Instance.ID }}", dns: ["web.example.com"], ip: ["{{ .Instance.IP4 }}"] } },
  templates: { web: { kind: "web", subnet_pool: "default", files } },
  groups: { blue: { web: { template: "web", size: 1, vars: extra.groupVars ?? {} } } }
})

const SECRETS = { provider: "object-storage", encryption_key: { provider: "env", source: "NSTANCE_SECRETS_KEY" } }

const ok = parsedConfig
const problems = configProblems

describe("templates.*.files", () => {
  it("decodes every kind, with default modes and a written one", () => {
    const { config, warnings } = ok(base({
      "web.crt": { kind: "certificate", template: "web.server", key: { source: "agent", name: "web.pub" } },
      "app.env": { kind: "env", template: { ENV: "{{ .Vars.Env }}" } },
      "app.json": { kind: "json", template: { env: "{{ .Vars.Env }}", ports: [80, 443] } },
      "motd": { kind: "string", template: "hello {{ .Instance.ID }}\n", mode: "0444" },
      "db/password": { kind: "secret", source: "db-password" },
      "site.conf": { kind: "storage", source: "files/{{ .Vars.Env }}/site.conf" }
    }, { secrets: SECRETS }))
    const files = config.templates["web"]!.files
    expect(files["web.crt"]).toEqual({ kind: "certificate", mode: 0o644, certificate: "web.server", key: { source: "agent", name: "web" } })
    expect(files["app.env"]).toEqual({ kind: "env", mode: 0o640, template: { ENV: "{{ .Vars.Env }}" } })
    expect(files["motd"]?.mode).toBe(0o444)
    expect(files["db/password"]).toEqual({ kind: "secret", mode: 0o600, source: "db-password" })
    expect(config.cluster.secrets).toEqual({ provider: "object-storage", prefix: "secret/", encryptionKey: { provider: "env", source: "NSTANCE_SECRETS_KEY" }, oldEncryptionKeys: [] })
    const template = config.certificates.templates["web.server"]!
    expect(template.kind).toBe("server")
    expect(Duration.toHours(template.ttl)).toBe(8760)
    expect(warnings.map(formatProblem)).toEqual([])
  })

  it("refuses an unknown kind, naming the field and the kinds there are", () => {
    expect(problems(base({ "a": { kind: "blob", source: "x" } }))).toEqual([
      `templates.web.files.a.kind: unknown file kind "blob" (expected one of: certificate, env, json, string, secret, storage)`
    ])
  })

  it("refuses a certificate file naming a certificate template that does not exist, or a special entry", () => {
    expect(problems(base({ "a.crt": { kind: "certificate", template: "nope", key: { source: "agent", name: "a.pub" } } }))).toEqual([
      `templates.web.files.a.crt.template: unknown certificate template "nope" (certificates: web.server)`
    ])
    expect(problems(base({ "a.crt": { kind: "certificate", template: "agent", key: { source: "agent", name: "a.pub" } } }, { certificates: { agent: { ttl: 2 } } }))).toEqual([
      `templates.web.files.a.crt.template: unknown certificate template "agent" (certificates: none)`
    ])
  })

  it("refuses a certificate key that is not the agent's, or not <name>.pub", () => {
    expect(problems(base({ "a.crt": { kind: "certificate", template: "web.server", key: { source: "server", name: "a.pub" } } }))).toEqual([
      `templates.web.files.a.crt.key.source: must be "agent" (the key is made on the VM and never leaves it; got "server")`
    ])
    expect(problems(base({ "a.crt": { kind: "certificate", template: "web.server", key: { source: "agent", name: "a.key" } } }))).toEqual([
      `templates.web.files.a.crt.key.name: must be "<name>.pub" with a name of letters, digits, '.', '_' or '-' (got "a.key")`
    ])
  })

  it("refuses bad SANs written literally and templates that do not parse; templated SANs wait for the VM", () => {
    const certificates = {
      "bad": { kind: "server", dns: ["ok.example.com", "not a name"], ip: ["10.0.0.300", "{{ .Instance.IP4 }}"], uri: ["relative/path", "spiffe://acme/web"], cn: "{{ .Instance.ID" }
    }
    expect(problems(base({}, { certificates }))).toEqual([
      `certificates.bad.cn: is not a valid template: line 1, column 1: unclosed action`,
      `certificates.bad.dns[1]: "not a name" is not a DNS name`,
      `certificates.bad.ip[0]: "10.0.0.300" is not an IP address`,
      `certificates.bad.uri[0]: "relative/path" is not an absolute URI`
    ])
  })

  it("refuses a storage key that cannot render to a readable key, for the group it renders for", () => {
    expect(problems(base({ "a": { kind: "storage", source: "{{ .Vars.Dir }}/a" } }, { groupVars: { Dir: "../other" } }))).toEqual([
      `templates.web.files.a.source: renders to "../other/a" for groups.blue.web, which must not contain '.' or '..' segments`
    ])
    expect(problems(base({ "a": { kind: "storage", source: "{{ index .Vars 3 }}" } }))).toHaveLength(1)
    expect(problems(base({ "a": { kind: "storage", source: "log/0000000000000001.json" } }))).toEqual([
      `templates.web.files.a.source: "log/0000000000000001.json" names the shard's own state (config, groups, lease or event log), which no VM may read`
    ])
    expect(problems(base({ "a": { kind: "storage", source: "{{ .Vars.Name }}" } }, { groupVars: { Name: "config.jsonc" } }))).toEqual([
      `templates.web.files.a.source: renders to "config.jsonc" for groups.blue.web, which names the shard's own state (config, groups, lease or event log), which no VM may read`
    ])
  })

  it("refuses a secret file without a secrets store, a secret name that climbs, and fields of another kind", () => {
    expect(problems(base({ "p": { kind: "secret", source: "db" } }))).toEqual([
      "templates.web.files.p.source: a secret file needs cluster.secrets with provider object-storage (where the secret is read)"
    ])
    expect(problems(base({ "p": { kind: "secret", source: "../other-tenant/db" } }, { secrets: SECRETS }))).toEqual([
      "templates.web.files.p.source: must be a secret name: segments of letters, digits, '.', '_' or '-' separated by '/' (no '..')"
    ])
    expect(problems(base({ "p": { kind: "env", template: { A: "x" }, source: "y" } }))).toEqual(["templates.web.files.p.source: is not a field of a env file"])
  })

  it("refuses file names that leave the files directory, and bad modes", () => {
    expect(problems(base({ "../etc/passwd": { kind: "string", template: "x" } }))).toEqual([
      "templates.web.files.../etc/passwd: file name must be a relative path of letters, digits, '.', '_' or '-' (no leading '/', '.' or '..' segments)"
    ])
    expect(problems(base({ "a": { kind: "string", template: "x", mode: "rw" } }))).toEqual([`templates.web.files.a.mode: must be octal permission bits such as "0640" (got "rw")`])
  })
})

describe("cluster.secrets", () => {
  it("object-storage needs an encryption key from env or file; old keys decrypt only", () => {
    const { config } = ok(base({}, { secrets: { ...SECRETS, prefix: "sealed/", old_encryption_keys: [{ provider: "file", source: "/etc/nstance/old.key" }] } }))
    expect(config.cluster.secrets?.oldEncryptionKeys).toEqual([{ provider: "file", source: "/etc/nstance/old.key" }])
    expect(config.cluster.secrets?.prefix).toBe("sealed/")
    expect(problems(base({}, { secrets: { provider: "object-storage" } }))).toEqual([
      `cluster.secrets.encryption_key: is required with object-storage: {"provider": "env", "source": "NSTANCE_SECRETS_KEY"} (32 bytes; values are sealed with it)`
    ])
    expect(problems(base({}, { secrets: { provider: "object-storage", encryption_key: { provider: "aws-secrets-manager", source: "k" } } }))).toEqual([
      "cluster.secrets.encryption_key.provider: aws-secrets-manager is not implemented by this build; use env or file"
    ])
    expect(problems(base({}, { secrets: { provider: "vault" } }))).toEqual([
      `cluster.secrets.provider: must be one of object-storage, aws-parameter-store, aws-secrets-manager, google-secret-manager, memory (got "vault")`
    ])
    expect(problems(base({}, { secrets: { ...SECRETS, encryption_kye: {} } }))).toEqual(["cluster.secrets.encryption_kye: unknown field; did you mean encryption_key?"])
  })
})

describe("--validate and config push refuse file problems the same way, naming the field", () => {
  const dir = mkdtempSync(join(tmpdir(), "nstance-files-push-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, "config.jsonc")
  writeFileSync(file, JSON.stringify(base({
    "a.crt": { kind: "certificate", template: "nope", key: { source: "agent", name: "a.pub" } },
    "b": { kind: "blob" }
  })))
  const expected = [
    `✗ templates.web.files.a.crt.template: unknown certificate template "nope" (certificates: web.server)`,
    `✗ templates.web.files.b.kind: unknown file kind "blob" (expected one of: certificate, env, json, string, secret, storage)`
  ]

  it("nstance-server --validate", async () => {
    const result = await runCommand(serverCommand, "nstance-server", ["--validate", file])
    expect(result.status).toBe(1)
    expect(result.stderr.trim().split("\n")).toEqual([...expected, `✗ ${file}: 2 problems; configuration is not valid`])
  })

  it("nstance-admin config push uploads nothing", async () => {
    const bucket = join(dir, "bucket")
    const result = await runCommand(adminCommand, "nstance-admin", ["config", "push", file, "--storage", "file", "--bucket", bucket, "--shard", "pve-a"])
    expect(result.status).toBe(1)
    expect(result.stderr.trim().split("\n").slice(0, 2)).toEqual(expected)
    expect(existsSync(join(bucket, "shard", "pve-a", "config.jsonc"))).toBe(false)
  })
})
