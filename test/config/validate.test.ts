import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Either } from "effect"
import { formatDuration } from "../../src/domain/duration.js"
import {
  desiredGroups,
  formatProblem,
  parseJsonc,
  type ParsedShardConfig,
  parseShardConfig,
  vmSpecFor
} from "../../src/domain/config/index.js"

const FIXTURES = "test/fixtures/bad-config"

const base = () => ({
  cluster: { id: "acme" } as Record<string, unknown>,
  shard: {
    id: "pve-a",
    infra: { provider: "proxmox", region: "dc1", zone: "a" } as Record<string, unknown>,
    bind: { health_addr: "0.0.0.0:8990", election_addr: "0.0.0.0:8991", registration_addr: "0.0.0.0:8992", operator_addr: "0.0.0.0:8993", agent_addr: "0.0.0.0:8994" },
    advertise: { health_addr: ":8990", election_addr: ":8991", registration_addr: "10.0.0.1:8992", operator_addr: "10.0.0.1:8993", agent_addr: "10.0.0.1:8994" },
    subnet_pools: { default: ["vmbr0"], vlan: ["vmbr1.100"], multi: ["vmbr2", "vmbr3.7"] } as Record<string, unknown>
  } as Record<string, unknown>,
  defaults: { args: { StoragePool: "local-lvm", TemplateName: "debian-13-template" } as Record<string, unknown> },
  templates: { web: { kind: "web", subnet_pool: "default" } as Record<string, unknown> } as Record<string, unknown>,
  groups: { default: { web: { template: "web", size: 2, args: { Cores: 2, Memory: 2048 } } as Record<string, unknown> } } as Record<string, unknown>
})

const ok = (config: unknown): ParsedShardConfig => {
  const parsed = parseShardConfig(JSON.stringify(config))
  if (Either.isLeft(parsed)) throw new Error(parsed.left.problems.map(formatProblem).join("\n"))
  return parsed.right
}
const problems = (config: unknown): ReadonlyArray<string> => {
  const parsed = parseShardConfig(typeof config === "string" ? config : JSON.stringify(config))
  return Either.isLeft(parsed) ? parsed.left.problems.map(formatProblem) : []
}

describe("shard config defaults", () => {
  it("applies the reference defaults", () => {
    const { config, warnings } = ok(base())
    expect(warnings).toEqual([])
    const d = (value: Duration.Duration) => formatDuration(value)
    expect(d(config.cluster.leaderElection.frequentInterval)).toBe("5s")
    expect(d(config.cluster.leaderElection.infrequentInterval)).toBe("30s")
    expect(d(config.cluster.leaderElection.leaderTimeout)).toBe("15s")
    expect(config.cluster.leaderElection.enabled).toBe(true)
    expect(d(config.shard.leaderElection.leaderTimeout)).toBe("15s")
    expect(d(config.shard.garbageCollection.interval)).toBe("2m0s")
    expect(d(config.shard.garbageCollection.registrationTimeout)).toBe("5m0s")
    expect(d(config.shard.garbageCollection.deletedRecordRetention)).toBe("30m0s")
    expect(d(config.shard.requestTimeout)).toBe("30s")
    expect(d(config.shard.healthCheckInterval)).toBe("1m0s")
    expect(Duration.isZero(config.shard.createRateLimit)).toBe(true)
    expect(config.shard.infra.options).toMatchObject({ insecureTls: false, cloudInitIsoStorage: "local", vmidRange: { low: 10_000, high: 999_999_999 } })
    expect(config.shard.bind.agent).toEqual({ host: "0.0.0.0", port: 8994, text: "0.0.0.0:8994" })
    expect(config.shard.advertise.health).toEqual({ host: "", port: 8990, text: ":8990" })
    expect(config.templates["web"]?.arch).toBe("amd64")
  })

  it("reads written durations and options", () => {
    const c = base()
    c.shard["garbage_collection"] = { interval: "1m", registration_timeout: "1h30m" }
    c.shard["create_rate_limit"] = "1.5s"
    c.shard["infra"] = { provider: "proxmox", region: "r", zone: "z", options: { insecure_tls: true, cloud_init_iso_storage: "cephfs" } }
    const { config } = ok(c)
    expect(Duration.toMillis(config.shard.garbageCollection.registrationTimeout)).toBe(5_400_000)
    expect(Duration.toMillis(config.shard.createRateLimit)).toBe(1_500)
    expect(config.shard.infra.options).toMatchObject({ insecureTls: true, cloudInitIsoStorage: "cephfs" })
  })

  it("accepts the guide's `kind` for the provider, but not a contradicting one", () => {
    const c = base()
    c.shard["infra"] = { kind: "proxmox", region: "r", zone: "z" }
    expect(ok(c).config.shard.infra.provider).toBe("proxmox")
    c.shard["infra"] = { kind: "aws", provider: "proxmox", region: "r", zone: "z" }
    expect(problems(c)).toEqual([`shard.infra.kind: contradicts provider "proxmox"; set only provider`])
  })
})

describe("fields of the original this build does not implement", () => {
  it("a leader network or load balancers get the Proxmox provider's answer (not supported / a no-op)", () => {
    const c = base() as Record<string, unknown> & ReturnType<typeof base>
    c.shard["leader_network"] = { subnet_pool: "nodes" }
    ;((c.groups["default"] as Record<string, Record<string, unknown>>)["web"]!)["load_balancers"] = ["public"]
    const { warnings } = ok(c)
    expect(warnings.map(formatProblem)).toEqual([
      "shard.leader_network: not supported by the Proxmox provider (it cannot assign a leader network; use keepalived for a VIP); ignored",
      "groups.default.web.load_balancers: load-balancer registration is a no-op with the Proxmox provider (Proxmox has no load balancer); ignored"
    ])
  })

  it("are accepted with one warning each, so the original's configs still load", () => {
    const c = base() as Record<string, unknown> & ReturnType<typeof base>
    c.cluster["secrets"] = { provider: "aws-parameter-store" }
    c["load_balancers"] = {}
    c["nat"] = {}
    ;(c.templates["web"] as Record<string, unknown>)["files"] = { "a.env": { kind: "env", template: {} } }
    const { warnings } = ok(c)
    expect(warnings.map(formatProblem)).toEqual([
      "load_balancers: load-balancer registration is a no-op with the Proxmox provider (Proxmox has no load balancer); ignored",
      "nat: not used by this build; ignored",
      "cluster.secrets.provider: aws-parameter-store is not implemented by this build (object-storage is); secret files cannot be delivered"
    ])
  })

  it("warn about unknown provider args and options instead of failing", () => {
    const c = base()
    c.defaults.args["Balloon"] = 1024
    c.shard["infra"] = { provider: "proxmox", region: "r", zone: "z", options: { api_timeout: "5s" } }
    expect(ok(c).warnings.map(formatProblem)).toEqual([
      "shard.infra.options.api_timeout: not a Proxmox option; ignored",
      "defaults.args.Balloon: not a Proxmox arg; ignored"
    ])
  })

  it("warns that only proxmox is driven by this build", () => {
    const c = base()
    c.shard["infra"] = { provider: "aws", region: "eu-west-1", zone: "eu-west-1a" }
    c.shard["subnet_pools"] = { default: ["subnet-aaa"] }
    c.defaults.args = { ImageId: "ami-1" }
    c.groups = { default: { web: { template: "web", size: 1 } } }
    expect(ok(c).warnings.map(formatProblem)).toEqual(["shard.infra.provider: aws is accepted for compatibility, but this build only drives proxmox"])
  })
})

describe("drains and expiry", () => {
  it("read drain timeouts per group and shard, and the expiry ages", () => {
    const c = base()
    c.shard["default_drain_timeout"] = "10m"
    c.shard["expiry"] = { eligible_age: "336h", forced_age: "504h", ondemand_age: "0s" }
    ;((c.groups["default"] as Record<string, Record<string, unknown>>)["web"]!)["drain_timeout"] = "0s"
    const { config } = ok(c)
    expect(Duration.toMillis(config.shard.defaultDrainTimeout)).toBe(600_000)
    expect(config.shard.expiry.eligibleAge && Duration.toHours(config.shard.expiry.eligibleAge)).toBe(336)
    expect(config.shard.expiry.forcedAge && Duration.toHours(config.shard.expiry.forcedAge)).toBe(504)
    expect(config.shard.expiry.ondemandAge).toBeUndefined()
    expect(config.groups["default"]!["web"]!.drainTimeout).toEqual(Duration.zero)
  })

  it("refuse a bad drain timeout or age by field, and an eligible age not below the forced one", () => {
    const c = base()
    c.shard["default_drain_timeout"] = "soon"
    c.shard["expiry"] = { eligible_age: "504h", forced_age: "336h" }
    ;((c.groups["default"] as Record<string, Record<string, unknown>>)["web"]!)["drain_timeout"] = "-1m"
    const found = problems(c)
    expect(found.some((p) => p.startsWith("shard.default_drain_timeout:"))).toBe(true)
    expect(found.some((p) => p.startsWith("shard.expiry.eligible_age: must be less than forced_age"))).toBe(true)
    expect(found.some((p) => p.startsWith("groups.default.web.drain_timeout:"))).toBe(true)
  })
})

describe("all problems at once", () => {
  it("reports every rule violation in one pass", () => {
    const c = base()
    c.cluster["id"] = "ACME"
    c.templates["bad"] = { kind: "toolong" }
    c.groups["default"] = { web: { template: "nope", size: -1 }, api: { template: "web", args: { VLANTag: 5000 } } }
    expect(problems(c)).toEqual([
      "cluster.id: cluster ID must contain only lowercase alphanumeric characters and hyphens, with no leading/trailing/consecutive hyphens",
      `templates.bad.kind: must be exactly 3 lowercase letters (got "toolong"); it prefixes instance IDs`,
      `groups.default.web.template: unknown template "nope" (templates: web, bad)`,
      "groups.default.web.size: must be a non-negative integer",
      "groups.default.api.args.VLANTag: must be an integer 1-4094",
      "groups.default.api.args.Cores: no CPU count; set Cores in args or cpu in instance_type",
      "groups.default.api.args.Memory: no memory size; set Memory (MiB) in args or memory in instance_type"
    ])
  })

  it("reports every shape problem in one pass", () => {
    expect(problems({ cluster: { id: 1 }, shard: { id: "s" }, templates: [] })).toEqual([
      "cluster.id: must be a string (got 1)",
      "shard.infra: is required",
      "shard.bind: is required",
      "shard.advertise: is required",
      "shard.subnet_pools: is required",
      "templates: must be an object (got [])"
    ])
  })
})

describe("VM spec precedence", () => {
  // Each row: where Cores / instance_type are written → resolved cores.
  const cases: ReadonlyArray<[string, (c: ReturnType<typeof base>) => void, number]> = [
    ["group args only", () => {}, 2],
    ["template instance_type vs group args: group args (more specific level) win", (c) => {
      (c.templates["web"] as Record<string, unknown>)["instance_type"] = "cpu:8,memory:8192"
    }, 2],
    ["group instance_type vs defaults args: group instance_type (more specific level) wins", (c) => {
      c.defaults.args["Cores"] = 1
      c.groups["default"] = { web: { template: "web", size: 1, instance_type: "cpu:8,memory:8192" } }
    }, 8],
    ["group instance_type vs group args: args win at the same level", (c) => {
      c.groups["default"] = { web: { template: "web", size: 1, instance_type: "cpu:8,memory:8192", args: { Cores: 3 } } }
    }, 3],
    ["template instance_type vs template args: args win at the same level", (c) => {
      c.templates["web"] = { kind: "web", subnet_pool: "default", instance_type: "cpu:8,memory:8192", args: { Cores: 6 } }
      c.groups["default"] = { web: { template: "web", size: 1 } }
    }, 6],
    ["template instance_type vs defaults args: template wins", (c) => {
      c.defaults.args["Cores"] = 1
      c.defaults.args["Memory"] = 512
      c.templates["web"] = { kind: "web", subnet_pool: "default", instance_type: "cpu:4,memory:8192" }
      c.groups["default"] = { web: { template: "web", size: 1 } }
    }, 4]
  ]
  it.each(cases)("%s", (_label, edit, cores) => {
    const c = base()
    edit(c)
    const { config } = ok(c)
    const spec = Either.getOrThrow(vmSpecFor(config, "default", "web"))
    expect(spec.cores).toBe(cores)
  })

  it("takes memory and disk from instance_type (disk in GiB) when no arg is more specific", () => {
    const c = base()
    c.groups["default"] = { web: { template: "web", size: 1, instance_type: "cpu:4,memory:8192,disk:50" } }
    expect(Either.getOrThrow(vmSpecFor(ok(c).config, "default", "web"))).toEqual({
      cores: 4,
      memoryMiB: 8192,
      diskSize: "50G",
      bridge: "vmbr0",
      subnet: { pool: "default", id: "vmbr0" },
      storagePool: "local-lvm",
      template: { name: "debian-13-template" },
      startOnBoot: false
    })
  })

  const network: ReadonlyArray<[string, (c: ReturnType<typeof base>) => void, object]> = [
    ["template subnet pool", () => {}, { bridge: "vmbr0", subnet: { pool: "default", id: "vmbr0" } }],
    ["group pool with a VLAN overrides the template's pool", (c) => {
      (c.groups["default"] as Record<string, Record<string, unknown>>)["web"]!["subnet_pool"] = "vlan"
    }, { bridge: "vmbr1", vlanTag: 100, subnet: { pool: "vlan", id: "vmbr1.100" } }],
    ["defaults Bridge arg loses to the template's pool (less specific)", (c) => {
      c.defaults.args["Bridge"] = "vmbr9"
      c.defaults.args["VLANTag"] = 9
    }, { bridge: "vmbr0", subnet: { pool: "default", id: "vmbr0" } }],
    ["template Bridge arg beats the template's pool (same level: arg wins), VLANTag from merged args", (c) => {
      c.defaults.args["VLANTag"] = 42
      c.templates["web"] = { kind: "web", subnet_pool: "default", args: { Bridge: "vmbr5" } }
    }, { bridge: "vmbr5", vlanTag: 42 }],
    ["group pool beats a template Bridge arg", (c) => {
      c.templates["web"] = { kind: "web", args: { Bridge: "vmbr5" } }
      ;(c.groups["default"] as Record<string, Record<string, unknown>>)["web"]!["subnet_pool"] = "vlan"
    }, { bridge: "vmbr1", vlanTag: 100, subnet: { pool: "vlan", id: "vmbr1.100" } }],
    ["no pool: Bridge arg", (c) => {
      c.templates["web"] = { kind: "web" }
      c.defaults.args["Bridge"] = "vmbr7"
    }, { bridge: "vmbr7" }],
    ["a pool of several subnets: the first", (c) => {
      (c.groups["default"] as Record<string, Record<string, unknown>>)["web"]!["subnet_pool"] = "multi"
    }, { bridge: "vmbr2", subnet: { pool: "multi", id: "vmbr2" } }]
  ]
  it.each(network)("network: %s", (_label, edit, expected) => {
    const c = base()
    edit(c)
    const spec = Either.getOrThrow(vmSpecFor(ok(c).config, "default", "web"))
    expect({ bridge: spec.bridge, vlanTag: spec.vlanTag, subnet: spec.subnet }).toEqual({ vlanTag: undefined, subnet: undefined, ...expected })
  })

  it("warns that only the first subnet of a multi-subnet pool is used", () => {
    const c = base()
    ;(c.groups["default"] as Record<string, Record<string, unknown>>)["web"]!["subnet_pool"] = "multi"
    expect(ok(c).warnings.map(formatProblem)).toEqual(["shard.subnet_pools.multi: has 2 subnets; this build attaches VMs to the first (vmbr2)"])
  })

  it("resolves TemplateVMID, StartOnBoot and Pool", () => {
    const c = base()
    c.defaults.args = { StoragePool: "ceph", TemplateVMID: 9000, StartOnBoot: true, Pool: "nstance", DiskSize: "20G" }
    const spec = Either.getOrThrow(vmSpecFor(ok(c).config, "default", "web"))
    expect(spec).toMatchObject({ template: { vmid: 9000 }, startOnBoot: true, pool: "nstance", storagePool: "ceph", diskSize: "20G" })
  })

  it("reports an unknown group", () => {
    const parsed = vmSpecFor(ok(base()).config, "default", "nope")
    expect(Either.isLeft(parsed) && parsed.left.problems).toEqual([{ path: "groups.default.nope", message: "no such group" }])
  })
})

describe("desiredGroups", () => {
  it("lists every static group with kind and size, sorted", () => {
    const c = base()
    c.templates["db"] = { kind: "dbs", subnet_pool: "default" }
    c.groups = {
      zeta: { a: { template: "db", size: 1, args: { Cores: 1, Memory: 512 } } },
      default: { web: { template: "web", size: 2, args: { Cores: 2, Memory: 2048 } }, idle: { template: "web", args: { Cores: 1, Memory: 512 } } }
    }
    const groups = desiredGroups(ok(c).config)
    expect(groups.map(({ tenant, group, template, kind, size }) => ({ tenant, group, template, kind, size }))).toEqual([
      { tenant: "default", group: "idle", template: "web", kind: "web", size: 0 },
      { tenant: "default", group: "web", template: "web", kind: "web", size: 2 },
      { tenant: "zeta", group: "a", template: "db", kind: "dbs", size: 1 }
    ])
    // Each with its infra hash (args differ between idle and web) and the shard's default drain timeout.
    expect(groups.map((g) => g.infraHash)).toSatisfy((hashes: ReadonlyArray<string>) => hashes.every((h) => /^sha256:[0-9a-f]{64}$/.test(h)) && new Set(hashes).size === 3)
    for (const g of groups) expect(Duration.toMillis(g.drainTimeout)).toBe(300_000)
  })
})

describe("examples", () => {
  it("single-cluster.jsonc validates with the expected groups", () => {
    const parsed = parseShardConfig(readFileSync("examples/single-cluster.jsonc", "utf8"))
    const { config } = Either.getOrThrow(parsed)
    expect(desiredGroups(config).reduce((sum, group) => sum + group.size, 0)).toBe(12)
    expect(Either.getOrThrow(vmSpecFor(config, "analytics", "warehouse"))).toMatchObject({ template: { vmid: 9001 }, cores: 8, bridge: "vmbr0", vlanTag: 200 })
  })

  it("two-shards: shards.jsonc lists exactly the shard configs beside it, with matching id, region and zone", () => {
    const dir = "examples/two-shards"
    const list = Either.getOrThrow(parseJsonc(readFileSync(join(dir, "shards.jsonc"), "utf8"))) as {
      shards: Array<{ id: string; provider: { kind: string; region: string; zone: string } }>
    }
    const dirs = readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort()
    expect(list.shards.map((shard) => shard.id).sort()).toEqual(dirs)
    for (const shard of list.shards) {
      const { config } = Either.getOrThrow(parseShardConfig(readFileSync(join(dir, shard.id, "config.jsonc"), "utf8")))
      expect(config.shard.id).toBe(shard.id)
      expect(config.shard.infra).toMatchObject({ provider: shard.provider.kind, region: shard.provider.region, zone: shard.provider.zone })
    }
  })
})

describe("bad configs (test/fixtures/bad-config)", () => {
  const names = readdirSync(FIXTURES).filter((name) => name.endsWith(".jsonc")).sort()

  it("has at least 25 of them, each with its expected lines", () => {
    expect(names.length).toBeGreaterThanOrEqual(25)
    expect(readdirSync(FIXTURES).filter((name) => name.endsWith(".expected")).length).toBe(names.length)
  })

  it.each(names)("%s fails with exactly the recorded lines", (name) => {
    const expected = readFileSync(join(FIXTURES, name.replace(/\.jsonc$/, ".expected")), "utf8").trimEnd().split("\n")
    expect(problems(readFileSync(join(FIXTURES, name), "utf8"))).toEqual(expected)
  })
})
