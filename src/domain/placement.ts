/**
 * Where a new VM goes: nodes from one `/cluster/resources?type=node` answer are filtered (online, with what
 * the VM's group needs as the preflight found it, with capacity, with room for the VM) and ranked by TOPSIS
 * on free memory (60 %) and free CPU (40 %), the weights the original documents (its code used 1:1). Every
 * node's metrics, score or exclusion reason are kept so an operator can see why a node was or was not chosen.
 */
import { Data, Schema } from "effect"
import { NumberFromStringOrNumber } from "./pve/schemas.js"
import { type Criterion, rankByScore, topsisScores, TopsisError } from "./topsis.js"

/** One node as `/cluster/resources?type=node` reports it (numbers already decoded). */
export interface NodeResources {
  readonly node: string
  readonly status: string
  /** Used memory, bytes. */
  readonly mem: number
  /** Total memory, bytes. */
  readonly maxmem: number
  /** CPU load as a fraction of all of the node's CPUs (0..1). */
  readonly cpu: number
  /** Number of CPUs. */
  readonly maxcpu: number
  /**
   * Why the reported figures cannot be true (negative, not finite, used above total), set by
   * `nodeResourcesFrom`: such a node is reported with the reason and never ranked.
   */
  readonly invalid?: string
  /**
   * Why the node cannot take the VM being placed whatever its room: it lacks something the VM's group
   * needs (its template, storage or bridge, as the preflight found). Set per placement by the caller.
   */
  readonly unfit?: string
}

// PVE sends these as JSON numbers, but hand-saved or proxied answers sometimes carry numeric strings.
const Numeric = NumberFromStringOrNumber

/**
 * One node entry of `/cluster/resources` as PVE sends it. Offline nodes come without the usage fields, so
 * those default to 0 (and the node is then excluded for its status, not for a decoding error).
 */
export const NodeResourcesEntry = Schema.Struct({
  node: Schema.String,
  status: Schema.String,
  mem: Schema.optionalWith(Numeric, { default: () => 0 }),
  maxmem: Schema.optionalWith(Numeric, { default: () => 0 }),
  cpu: Schema.optionalWith(Numeric, { default: () => 0 }),
  maxcpu: Schema.optionalWith(Numeric, { default: () => 0 })
})

/**
 * Why a node's figures cannot be true, or undefined. PVE reports `mem`/`maxmem` in bytes, `maxcpu` as a
 * CPU count and `cpu` as the load fraction of all of them (0..1); anything else is a broken or forged
 * answer, and ranking it would put a node with "100100 %" free memory first.
 */
export const nodeFiguresProblem = (node: Pick<NodeResources, "mem" | "maxmem" | "cpu" | "maxcpu">): string | undefined => {
  for (const field of ["mem", "maxmem", "cpu", "maxcpu"] as const) {
    const value = node[field]
    if (!Number.isFinite(value)) return `${field} ${value} is not a finite number`
    if (value < 0) return `${field} ${value} is negative`
  }
  if (node.mem > node.maxmem) return `mem ${node.mem} is more than maxmem ${node.maxmem}`
  if (node.cpu > 1) return `cpu ${node.cpu} is more than 1 (PVE reports the load as a fraction of all CPUs)`
  if (!Number.isInteger(node.maxcpu)) return `maxcpu ${node.maxcpu} is not a whole number of CPUs`
  return undefined
}

/**
 * The placement view of a decoded node entry (from PVE or a saved file): offline nodes come without
 * usage fields, which count as 0; figures that cannot be true mark the node `invalid`.
 */
export const nodeResourcesFrom = (entry: {
  readonly node: string
  readonly status: string
  readonly mem?: number | undefined
  readonly maxmem?: number | undefined
  readonly cpu?: number | undefined
  readonly maxcpu?: number | undefined
}): NodeResources => {
  const figures = { mem: entry.mem ?? 0, maxmem: entry.maxmem ?? 0, cpu: entry.cpu ?? 0, maxcpu: entry.maxcpu ?? 0 }
  const invalid = nodeFiguresProblem(figures)
  return { node: entry.node, status: entry.status, ...figures, ...(invalid === undefined ? {} : { invalid }) }
}

/** The exclusion reason of a node whose figures cannot be true. */
export const INVALID_FIGURES = "reports impossible figures"

/** The exclusion reason of a node that lacks what the VM's group needs. */
export const LACKS = "lacks what the group needs"

/** `nodes` with each node the group cannot use marked `unfit` with why (`unfit`: node → reason). */
export const markUnfit = (nodes: ReadonlyArray<NodeResources>, unfit: ReadonlyMap<string, string>): ReadonlyArray<NodeResources> =>
  unfit.size === 0 ? nodes : nodes.map((node) => {
    const reason = unfit.get(node.node)
    return reason === undefined ? node : { ...node, unfit: reason }
  })

/** What the VM to place asks for. */
export interface Demand {
  readonly memoryBytes: number
  readonly cores: number
}

export interface NodeEvaluation {
  readonly node: string
  readonly status: string
  readonly freeMemoryBytes: number
  readonly freeMemoryPercent: number
  readonly freeCpuPercent: number
  readonly maxcpu: number
  /** TOPSIS closeness in [0, 1]; undefined for an excluded node. */
  readonly score: number | undefined
  /** Why the node cannot take the VM; undefined for a candidate. */
  readonly excluded: string | undefined
}

export interface Placement {
  readonly node: string
  readonly score: number
  /** Candidates best first, then excluded nodes (by name). */
  readonly ranking: ReadonlyArray<NodeEvaluation>
}

export class NoPlacement extends Data.TaggedError("NoPlacement")<{
  readonly reason: string
  readonly ranking: ReadonlyArray<NodeEvaluation>
  /** For `planPlacements`: the VMs that did fit before the cluster ran out of room. */
  readonly placed: ReadonlyArray<Placement>
}> {
  override get message() {
    return `no node can take the VM: ${this.reason}`
  }
}

export const FREE_MEMORY_WEIGHT = 0.6
export const FREE_CPU_WEIGHT = 0.4
const CRITERIA: ReadonlyArray<Criterion> = [
  { weight: FREE_MEMORY_WEIGHT, direction: "max" },
  { weight: FREE_CPU_WEIGHT, direction: "max" }
]

/**
 * Load a freshly placed VM is assumed to add, as a fraction of its cores, until the next
 * `/cluster/resources` answer shows the real figure. A booting guest (cloud-init, package installs) keeps
 * its vCPUs busy for a while, then usually idles; one half is a middle estimate that spreads a burst of
 * creates without letting a guess outweigh memory, which is the hard limit.
 */
export const ASSUMED_CPU_UTILISATION = 0.5

const MIB = 1024 * 1024
const mib = (bytes: number) => `${Math.floor(bytes / MIB)} MiB`

const round = (value: number) => Math.round(value * 100) / 100

const evaluate = (node: NodeResources, demand: Demand): NodeEvaluation => {
  // Nodes built without `nodeResourcesFrom` get the checks that stay true after `withVmPlaced` charged
  // them (its CPU estimate may pass 1; memory never passes maxmem, a node without room is not chosen).
  const invalid = node.invalid ?? nodeFiguresProblem({ ...node, cpu: Math.min(node.cpu, 1) })
  const capacityKnown = invalid === undefined && Number.isFinite(node.maxmem) && node.maxmem > 0 && Number.isFinite(node.maxcpu) && node.maxcpu > 0
  const freeMemoryBytes = capacityKnown ? node.maxmem - node.mem : 0
  const freeMemoryPercent = capacityKnown ? 100 - (100 * node.mem) / node.maxmem : 0
  const freeCpuPercent = capacityKnown ? 100 - 100 * node.cpu : 0
  const excluded =
    invalid !== undefined
      ? `${INVALID_FIGURES}: ${invalid}`
      : node.status !== "online"
      ? `not online (status ${node.status})`
      : node.unfit !== undefined
      ? `${LACKS}: ${node.unfit}`
      : !capacityKnown
      ? "reports no memory or CPU capacity"
      : !Number.isFinite(node.mem) || !Number.isFinite(node.cpu)
      ? "reports no memory or CPU usage"
      : freeMemoryBytes < demand.memoryBytes
      ? `only ${mib(freeMemoryBytes)} free, VM needs ${mib(demand.memoryBytes)}`
      // PVE refuses to start a VM with more vCPUs than the node has CPUs.
      : node.maxcpu < demand.cores
      ? `has ${node.maxcpu} CPUs, VM needs ${demand.cores} cores`
      : undefined
  return {
    node: node.node,
    status: node.status,
    freeMemoryBytes,
    freeMemoryPercent: round(freeMemoryPercent),
    freeCpuPercent: round(freeCpuPercent),
    maxcpu: node.maxcpu,
    score: undefined,
    excluded
  }
}

const byName = (a: NodeEvaluation, b: NodeEvaluation) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0)

/** Every node evaluated: candidates ranked best first (ties by node name), then excluded ones. */
export const rankNodes = (nodes: ReadonlyArray<NodeResources>, demand: Demand): ReadonlyArray<NodeEvaluation> => {
  const evaluations = nodes.map((node) => ({ node, evaluation: evaluate(node, demand) }))
  const candidates = evaluations.filter((e) => e.evaluation.excluded === undefined)
  // Unrounded percentages go into TOPSIS; the rounded ones are only for display.
  const matrix = candidates.map(({ node }) => [100 - (100 * node.mem) / node.maxmem, 100 - 100 * node.cpu])
  const scores = topsisScores(matrix, CRITERIA)
  // Inputs are finite and weights fixed, so TOPSIS cannot fail here; stay total anyway.
  const safeScores = scores instanceof TopsisError ? matrix.map(() => 0) : scores
  const order = rankByScore(safeScores, (i) => candidates[i]?.node.node ?? "")
  const ranked = order.flatMap((i) => {
    const candidate = candidates[i]
    return candidate === undefined ? [] : [{ ...candidate.evaluation, score: safeScores[i] ?? 0 }]
  })
  const excluded = evaluations.map((e) => e.evaluation).filter((e) => e.excluded !== undefined).sort(byName)
  return [...ranked, ...excluded]
}

const explain = (nodes: ReadonlyArray<NodeResources>, ranking: ReadonlyArray<NodeEvaluation>, demand: Demand): string => {
  if (nodes.length === 0) return "the cluster reported no nodes"
  const online = ranking.filter((e) => e.status === "online")
  if (online.length === 0) {
    return `no node is online (${ranking.map((e) => `${e.node}: ${e.status}`).join(", ")})`
  }
  const plausible = online.filter((e) => !(e.excluded ?? "").startsWith(INVALID_FIGURES))
  if (plausible.length === 0) return `no online node reports plausible figures (${online.map((e) => `${e.node}: ${e.excluded ?? ""}`).join("; ")})`
  const fit = plausible.filter((e) => !(e.excluded ?? "").startsWith(LACKS))
  if (fit.length === 0) {
    return `no online node has what the group needs (${plausible.map((e) => `${e.node}: ${(e.excluded ?? "").slice(LACKS.length + 2)}`).join("; ")})`
  }
  const withCapacity = fit.filter((e) => e.excluded !== "reports no memory or CPU capacity")
  if (withCapacity.length === 0) return `no online node reports its capacity (${online.map((e) => e.node).join(", ")})`
  const roomiest = [...withCapacity].sort((a, b) => b.freeMemoryBytes - a.freeMemoryBytes || byName(a, b))[0]
  const mostCpus = [...withCapacity].sort((a, b) => b.maxcpu - a.maxcpu || byName(a, b))[0]
  const memoryShort = roomiest !== undefined && roomiest.freeMemoryBytes < demand.memoryBytes
  return memoryShort
    ? `no online node has ${mib(demand.memoryBytes)} of free memory; the most is ${mib(roomiest.freeMemoryBytes)} on ${roomiest.node}`
    : `no online node has both ${mib(demand.memoryBytes)} free and ${demand.cores} CPUs; the most CPUs is ${mostCpus?.maxcpu ?? 0} on ${mostCpus?.node ?? "?"}`
}

/** The best node for one VM, or why there is none. */
export const placeOne = (nodes: ReadonlyArray<NodeResources>, demand: Demand): Placement | NoPlacement => {
  const ranking = rankNodes(nodes, demand)
  const best = ranking[0]
  if (best === undefined || best.excluded !== undefined || best.score === undefined) {
    return new NoPlacement({ reason: explain(nodes, ranking, demand), ranking, placed: [] })
  }
  return { node: best.node, score: best.score, ranking }
}

/** The node after it has taken one more VM of `demand`, as the next `/cluster/resources` would roughly show. */
export const withVmPlaced = (node: NodeResources, demand: Demand): NodeResources => ({
  ...node,
  mem: node.mem + demand.memoryBytes,
  cpu: node.cpu + (demand.cores / node.maxcpu) * ASSUMED_CPU_UTILISATION
})

/**
 * Places `count` VMs one after the other, charging each chosen node with the VM before choosing the next,
 * so a burst spreads over the cluster instead of landing on the node that looked best at the start.
 */
export const planPlacements = (
  nodes: ReadonlyArray<NodeResources>,
  demand: Demand,
  count: number
): ReadonlyArray<Placement> | NoPlacement => {
  const placed: Array<Placement> = []
  let current = nodes
  for (let i = 0; i < count; i++) {
    const placement = placeOne(current, demand)
    if (placement instanceof NoPlacement) {
      return i === 0
        ? placement
        : new NoPlacement({ reason: `only ${i} of ${count} VMs fit: ${placement.reason}`, ranking: placement.ranking, placed })
    }
    placed.push(placement)
    current = current.map((node) => (node.node === placement.node ? withVmPlaced(node, demand) : node))
  }
  return placed
}
