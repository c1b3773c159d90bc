import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import {
  checkProxmoxArg,
  identifierProblem,
  parseAddress,
  parseInstanceType,
  parseJsonc,
  parseSubnetId,
  readProxmoxEnv
} from "../../src/domain/config/index.js"
import { editDistance, suggestKey } from "../../src/domain/config/keys.js"

const right = <A, E>(either: Either.Either<A, E>): A => Either.getOrThrowWith(either, (e) => new Error(String(e)))
const left = <A, E>(either: Either.Either<A, E>): E => Either.getOrThrowWith(Either.flip(either), () => new Error("expected a failure"))

describe("SubnetID (bridge[.vlan])", () => {
  it.each([
    ["vmbr0", { bridge: "vmbr0" }],
    ["vmbr0.100", { bridge: "vmbr0", vlanTag: 100 }],
    ["vmbr1.1", { bridge: "vmbr1", vlanTag: 1 }],
    ["vmbr1.4094", { bridge: "vmbr1", vlanTag: 4094 }],
    ["vnet_prod-1", { bridge: "vnet_prod-1" }]
  ])("%j → %j", (id, subnet) => {
    expect(right(parseSubnetId(id))).toEqual(subnet)
  })

  it.each([
    ["vmbr0.0", /VLAN "0"; a VLAN tag is an integer 1-4094/],
    ["vmbr0.4095", /VLAN "4095"/],
    ["vmbr0.x", /VLAN "x"/],
    ["vmbr0.", /VLAN ""/],
    ["vmbr0.1.2", /is not a Proxmox subnet/],
    ["", /is not a Proxmox subnet/],
    ["subnet-0a/24", /is not a Proxmox subnet/]
  ])("refuses %j", (id, message) => {
    expect(left(parseSubnetId(id))).toMatch(message)
  })
})

describe("InstanceType (cpu:N,memory:MiB,disk:GiB)", () => {
  it.each([
    ["cpu:4,memory:8192,disk:50", { cpu: 4, memoryMiB: 8192, diskGiB: 50 }],
    ["cpu:2", { cpu: 2 }],
    [" memory : 1024 , cpu : 1 ", { cpu: 1, memoryMiB: 1024 }],
    ["disk:10", { diskGiB: 10 }]
  ])("%j → %j", (text, parsed) => {
    expect(right(parseInstanceType(text))).toEqual(parsed)
  })

  it.each([
    ["", /empty instance type/],
    ["t4g.small", /"t4g.small" is not key:value/],
    ["cpu:0", /cpu must be a positive integer, got "0"/],
    ["cpu:1.5", /cpu must be a positive integer/],
    ["cpu:-1", /cpu must be a positive integer/],
    ["cpu:2,cpu:4", /cpu is given twice/],
    ["gpu:1", /unknown key "gpu"/],
    ["cpu:4,", /"" is not key:value/],
    ["cpu:4:5", /is not key:value/],
    ["cpu:1000000", /^cpu must be at most 1024 \(got 1000000\)$/],
    ["memory:8", /^memory must be at least 16 MiB \(got 8\)$/],
    ["memory:99999999", /^memory must be at most 16777216 MiB \(16 TiB; got 99999999\)$/],
    ["disk:99999999", /^disk must be at most 1048576 GiB \(1 PiB; got 99999999\)$/]
  ])("refuses %j", (text, message) => {
    expect(left(parseInstanceType(text))).toMatch(message)
  })
})

describe("Proxmox arg types", () => {
  it.each([
    ["StoragePool", "local-lvm", undefined],
    ["StoragePool", "", `must be a PVE storage ID such as "local-lvm" (letters, digits, '-', '_', '.')`],
    ["StoragePool", "local lvm,ceph", `must be a PVE storage ID such as "local-lvm" (letters, digits, '-', '_', '.')`],
    ["TemplateName", 42, `must be a PVE VM name such as "debian-13-template" (letters, digits, '-', '.')`],
    ["TemplateName", "debian 13", `must be a PVE VM name such as "debian-13-template" (letters, digits, '-', '.')`],
    ["TemplateVMID", 9000, undefined],
    ["TemplateVMID", "9000", "must be a VMID, an integer 100-999999999"],
    ["TemplateVMID", 0, "must be a VMID, an integer 100-999999999"],
    ["TemplateVMID", 9000.5, "must be a VMID, an integer 100-999999999"],
    ["TemplateVMID", 1_000_000_000, "must be a VMID, an integer 100-999999999"],
    ["Bridge", "vmbr0", undefined],
    ["Bridge", "vmbr0.100", `must be a bridge name such as "vmbr0"`],
    ["VLANTag", 100, undefined],
    ["VLANTag", 0, "must be an integer 1-4094"],
    ["VLANTag", 4095, "must be an integer 1-4094"],
    ["Cores", 4, undefined],
    ["Cores", -1, "must be a positive integer"],
    ["Cores", 1_000_000, "must be at most 1024 (got 1000000)"],
    ["Memory", 2048, undefined],
    ["Memory", "2G", "must be a positive integer (MiB)"],
    ["Memory", 8, "must be at least 16 MiB (got 8)"],
    ["Memory", 99_999_999_999, "must be at most 16777216 MiB (16 TiB; got 99999999999)"],
    ["DiskSize", "50G", undefined],
    ["DiskSize", "512M", undefined],
    ["DiskSize", "2T", undefined],
    ["DiskSize", "1024T", undefined],
    ["DiskSize", "1025T", "must be at most 1048576 GiB (1 PiB; got 1025T)"],
    ["DiskSize", "99999999999T", "must be at most 1048576 GiB (1 PiB; got 99999999999T)"],
    // PVE's own resize syntax, `\+?\d+(\.\d+)?[KMGT]?`: relative, fractional, and bytes without a unit.
    ["DiskSize", "+10G", undefined],
    ["DiskSize", "1.5T", undefined],
    ["DiskSize", "+0.5G", undefined],
    ["DiskSize", "10737418240", undefined],
    ["DiskSize", "+1025T", "must be at most 1048576 GiB (1 PiB; got +1025T)"],
    ["DiskSize", "0", "must be more than 0 (got 0)"],
    ["DiskSize", "+0G", "must be more than 0 (got +0G)"],
    ["DiskSize", "50GB", `must be a PVE size such as "50G", "1.5T" or "+10G" (number + K, M, G or T; "+" grows the template's disk)`],
    ["DiskSize", "50g", `must be a PVE size such as "50G", "1.5T" or "+10G" (number + K, M, G or T; "+" grows the template's disk)`],
    ["DiskSize", "-10G", `must be a PVE size such as "50G", "1.5T" or "+10G" (number + K, M, G or T; "+" grows the template's disk)`],
    ["DiskSize", "++10G", `must be a PVE size such as "50G", "1.5T" or "+10G" (number + K, M, G or T; "+" grows the template's disk)`],
    ["DiskSize", "1.G", `must be a PVE size such as "50G", "1.5T" or "+10G" (number + K, M, G or T; "+" grows the template's disk)`],
    ["DiskSize", ".5G", `must be a PVE size such as "50G", "1.5T" or "+10G" (number + K, M, G or T; "+" grows the template's disk)`],
    ["DiskSize", " 50G", `must be a PVE size such as "50G", "1.5T" or "+10G" (number + K, M, G or T; "+" grows the template's disk)`],
    ["DiskSize", 50, `must be a PVE size such as "50G", "1.5T" or "+10G" (number + K, M, G or T; "+" grows the template's disk)`],
    ["StartOnBoot", true, undefined],
    ["StartOnBoot", "true", "must be true or false"],
    ["Pool", "nstance", undefined],
    ["Pool", 3, `must be a PVE pool ID such as "nstance" (letters, digits, '-', '_', '.', '/')`],
    ["Pool", "my pool", `must be a PVE pool ID such as "nstance" (letters, digits, '-', '_', '.', '/')`]
  ])("%s = %j → %j", (key, value, problem) => {
    expect(checkProxmoxArg(key, value)).toBe(problem)
  })
})

describe("identifiers (cluster, shard, tenant, group, subnet pool)", () => {
  it.each([
    ["a", undefined],
    ["pve-a", undefined],
    ["dc1-cluster-a", undefined],
    ["a".repeat(32), undefined],
    ["", "cannot be empty"],
    ["a".repeat(33), "exceeds maximum length of 32 characters"],
    ["Pve", /lowercase alphanumeric/],
    ["-pve", /lowercase alphanumeric/],
    ["pve-", /lowercase alphanumeric/],
    ["pve--a", /lowercase alphanumeric/],
    ["pve_a", /lowercase alphanumeric/]
  ])("%j → %s", (id, problem) => {
    const result = identifierProblem(id)
    if (problem === undefined) expect(result).toBeUndefined()
    else if (typeof problem === "string") expect(result).toBe(problem)
    else expect(result).toMatch(problem)
  })
})

describe("host:port addresses", () => {
  it.each([
    [":8990", "", 8990],
    ["0.0.0.0:8990", "0.0.0.0", 8990],
    ["[::]:8991", "::", 8991],
    ["[fd00::1]:1", "fd00::1", 1],
    ["nstance.example.com:65535", "nstance.example.com", 65535]
  ])("%j → host %j port %d", (text, host, port) => {
    expect(right(parseAddress(text))).toEqual({ host, port, text })
  })

  it.each([
    ["8990", /must be host:port/],
    ["host:0", /port "0"; a port is 1-65535/],
    ["host:65536", /port "65536"/],
    ["host:", /port ""/],
    ["fd00::1:8990", /IPv6 host must be in brackets/],
    ["[nope]:80", /"nope" is not an IPv6 address/],
    [".example.com:80", /not a valid IP address or hostname/],
    ["a..b:80", /not a valid IP address or hostname/],
    ["under_score:80", /not a valid IP address or hostname/]
  ])("refuses %j", (text, message) => {
    expect(left(parseAddress(text))).toMatch(message)
  })
})

describe("JSONC", () => {
  it("accepts comments and trailing commas", () => {
    expect(right(parseJsonc(`// c\n{ "a": [1, 2,], /* x */ "b": { "c": true, }, }\n`))).toEqual({ a: [1, 2], b: { c: true } })
  })

  it("locates syntax errors by line and column", () => {
    expect(left(parseJsonc(`{\n  "a": 1\n  "b": 2\n}`))).toEqual([{ line: 3, column: 3, message: "expected ','" }])
  })
})

describe("typo suggestions", () => {
  it.each([
    ["helth_check_interval", "health_check_interval"],
    ["registration_timout", "registration_timeout"],
    ["cores", "Cores"],
    ["StoragePol", "StoragePool"],
    ["templates", undefined],
    ["foo", undefined]
  ])("%j → %j", (key, suggestion) => {
    expect(suggestKey(key, ["health_check_interval", "registration_timeout", "Cores", "StoragePool", "request_timeout"])).toBe(suggestion)
  })

  it("counts edits case-insensitively", () => {
    expect(editDistance("Kitten", "sitting")).toBe(3)
    expect(editDistance("VLANTag", "vlantag")).toBe(0)
  })
})

describe("readProxmoxEnv", () => {
  const token = { PROXMOX_TOKEN_ID: "nstance@pve!nstance-token", PROXMOX_TOKEN_SECRET: "xxxxxxxx-xxxx" }

  it("defaults the API URL to the local node", () => {
    expect(right(readProxmoxEnv(token))).toEqual({
      apiUrl: "https://localhost:8006/api2/json",
      tokenId: "nstance@pve!nstance-token",
      tokenSecret: "xxxxxxxx-xxxx"
    })
  })

  it("keeps a given URL (without a trailing slash)", () => {
    expect(right(readProxmoxEnv({ ...token, PROXMOX_API_URL: "http://127.0.0.1:8006/api2/json/" })).apiUrl).toBe("http://127.0.0.1:8006/api2/json")
  })

  it.each([
    [{ PROXMOX_TOKEN_SECRET: "s" }, ["PROXMOX_TOKEN_ID is not set; the proxmox provider needs an API token (user@realm!tokenid)"]],
    [{ PROXMOX_TOKEN_ID: "root@pam!t" }, ["PROXMOX_TOKEN_SECRET is not set; the proxmox provider needs the API token's secret"]],
    [{}, [
      "PROXMOX_TOKEN_ID is not set; the proxmox provider needs an API token (user@realm!tokenid)",
      "PROXMOX_TOKEN_SECRET is not set; the proxmox provider needs the API token's secret"
    ]],
    [{ ...token, PROXMOX_TOKEN_ID: "root@pam" }, [`PROXMOX_TOKEN_ID must look like user@realm!tokenid (got "root@pam"); quote it in single quotes in a shell`]],
    [{ ...token, PROXMOX_API_URL: "ftp://pve:8006" }, [`PROXMOX_API_URL must be an http(s) URL such as https://localhost:8006/api2/json (got "ftp://pve:8006")`]],
    [{ ...token, PROXMOX_API_URL: "pve:8006" }, [`PROXMOX_API_URL must be an http(s) URL such as https://localhost:8006/api2/json (got "pve:8006")`]]
  ])("refuses %j naming the variable", (env, errors) => {
    expect(left(readProxmoxEnv(env))).toEqual(errors)
  })
})
