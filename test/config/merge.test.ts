import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import { cloneJson, type JsonObject, mergeArgs, mergedArgsFor, parseShardConfig } from "../../src/domain/config/index.js"

const deepFreeze = <A>(value: A): A => {
  if (typeof value === "object" && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}

describe("args merge (defaults → template → group)", () => {
  it("merges objects recursively and replaces everything else, arrays included", () => {
    const merged = mergeArgs(
      { StoragePool: "local-lvm", Tags: ["a", "b"], Net: { Bridge: "vmbr0", Model: "virtio" }, Cores: 2 },
      { Tags: ["c"], Net: { Bridge: "vmbr1" } },
      { Cores: 4, Net: { Firewall: true } }
    )
    expect(merged).toEqual({ StoragePool: "local-lvm", Tags: ["c"], Net: { Bridge: "vmbr1", Model: "virtio", Firewall: true }, Cores: 4 })
  })

  it("lets null remove an inherited key", () => {
    expect(mergeArgs({ TemplateName: "debian", StoragePool: "x" }, { TemplateName: null, TemplateVMID: 9000 })).toEqual({ StoragePool: "x", TemplateVMID: 9000 })
  })

  it("replaces an object by a scalar and a scalar by an object", () => {
    expect(mergeArgs({ A: { b: 1 }, C: 1 }, { A: 2, C: { d: 3 } })).toEqual({ A: 2, C: { d: 3 } })
  })

  it("never writes into its inputs (the original's §12 item 12 bug)", () => {
    const defaults = deepFreeze({ Net: { Bridge: "vmbr0" }, List: [{ x: 1 }] })
    const template = deepFreeze({ Net: { VLAN: 100 } })
    const merged = mergeArgs(defaults, template, { Net: { Firewall: true } }) as { Net: Record<string, unknown>; List: Array<{ x: number }> }
    // Frozen inputs would make any write throw; the result must also be free to mutate without effect.
    merged.Net["Bridge"] = "vmbr9"
    merged.List[0]!.x = 2
    expect(defaults).toEqual({ Net: { Bridge: "vmbr0" }, List: [{ x: 1 }] })
    expect(template).toEqual({ Net: { VLAN: 100 } })
  })

  const json: FastCheck.Arbitrary<unknown> = FastCheck.letrec((tie) => ({
    value: FastCheck.oneof(
      { depthSize: "small", withCrossShrink: true },
      FastCheck.constant(null),
      FastCheck.boolean(),
      FastCheck.integer(),
      FastCheck.string({ maxLength: 4 }),
      FastCheck.array(tie("value"), { maxLength: 3 }),
      tie("object")
    ),
    object: FastCheck.dictionary(FastCheck.constantFrom("a", "b", "c", "Net", "Cores"), tie("value"), { maxKeys: 4 })
  })).object as FastCheck.Arbitrary<unknown>

  it.prop(
    "merging for group A, mutating the result, then merging for group B gives B the same args as a fresh merge",
    [json, json, json, json],
    ([defaults, template, groupA, groupB]) => {
      const [d, t, a, b] = [defaults, template, groupA, groupB] as Array<JsonObject>
      const snapshot = cloneJson([d, t, a, b])
      const expectedB = mergeArgs(cloneJson(d) as JsonObject, cloneJson(t) as JsonObject, cloneJson(b) as JsonObject)
      const forA = mergeArgs(d, t, a)
      // Scribble over every object reachable from A's result.
      const scribble = (value: unknown): void => {
        if (typeof value === "object" && value !== null) {
          for (const key of Object.keys(value)) {
            scribble((value as Record<string, unknown>)[key])
            ;(value as Record<string, unknown>)[key] = "scribbled"
          }
        }
      }
      scribble(forA)
      expect(mergeArgs(d, t, b)).toEqual(expectedB)
      expect([d, t, a, b]).toEqual(snapshot)
    }
  )

  it("mergedArgsFor returns independent objects per group", () => {
    const parsed = parseShardConfig(JSON.stringify({
      cluster: { id: "c" },
      shard: {
        id: "s",
        infra: { provider: "proxmox", region: "r", zone: "z" },
        bind: { health_addr: ":1", election_addr: ":2", registration_addr: ":3", operator_addr: ":4", agent_addr: ":5" },
        advertise: { health_addr: ":1", election_addr: ":2", registration_addr: ":3", operator_addr: ":4", agent_addr: ":5" },
        subnet_pools: { p: ["vmbr0"] }
      },
      defaults: { args: { StoragePool: "lvm", TemplateVMID: 9000, Cores: 1, Memory: 512, Extra: { Nested: { Value: 1 } } } },
      templates: { t: { kind: "tst", subnet_pool: "p", args: { Extra: { Nested: { Other: 2 } } } } },
      groups: { ten: { a: { template: "t", size: 1, args: { Extra: { Nested: { Value: 5 } } } }, b: { template: "t", size: 1 } } }
    }))
    if (Either.isLeft(parsed)) throw parsed.left
    const config = parsed.right.config
    const a = mergedArgsFor(config, "ten", "a") as { Extra: { Nested: Record<string, unknown> } }
    expect(a.Extra.Nested).toEqual({ Value: 5, Other: 2 })
    a.Extra.Nested["Value"] = 99
    expect(mergedArgsFor(config, "ten", "b")).toEqual({ StoragePool: "lvm", TemplateVMID: 9000, Cores: 1, Memory: 512, Extra: { Nested: { Value: 1, Other: 2 } } })
    expect(config.defaults.args).toEqual({ StoragePool: "lvm", TemplateVMID: 9000, Cores: 1, Memory: 512, Extra: { Nested: { Value: 1 } } })
    expect(mergedArgsFor(config, "ten", "nope")).toBeUndefined()
  })
})
