/**
 * A shard config (`config.jsonc`) as plain JSON for tests that build one: the `shard` section every such
 * config needs (one Proxmox shard, its five listeners, one subnet pool `default`), and the parser's verdict.
 */
import { Either } from "effect"
import { formatProblem, type ParsedShardConfig, parseShardConfig } from "../../src/domain/config/index.js"

export const shardSection = (id = "pve-a") => ({
  id,
  infra: { provider: "proxmox", region: "dc1", zone: "a" },
  bind: { health_addr: "0.0.0.0:8990", election_addr: "0.0.0.0:8991", registration_addr: "0.0.0.0:8992", operator_addr: "0.0.0.0:8993", agent_addr: "0.0.0.0:8994" },
  advertise: { health_addr: ":8990", election_addr: ":8991", registration_addr: "10.0.0.1:8992", operator_addr: "10.0.0.1:8993", agent_addr: "10.0.0.1:8994" },
  subnet_pools: { default: ["vmbr0"] }
})

/** `config` parsed; a config the parser refuses throws with its problems, one per line. */
export const parsedConfig = (config: unknown): ParsedShardConfig => {
  const parsed = parseShardConfig(JSON.stringify(config))
  if (Either.isLeft(parsed)) throw new Error(parsed.left.problems.map(formatProblem).join("\n"))
  return parsed.right
}

/** The parser's problems with `config`, one line each (none: it parses). */
export const configProblems = (config: unknown): ReadonlyArray<string> => {
  const parsed = parseShardConfig(JSON.stringify(config))
  return Either.isLeft(parsed) ? parsed.left.problems.map(formatProblem) : []
}
