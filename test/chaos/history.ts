/**
 * What one chaos run records, in one global order: every PVE call a replica's leader made (start and end),
 * every object-store write (who, which term, the outcome, the events of a landed log segment), lease and
 * term changes, crashes and restarts, every config in force (group sizes, infra hashes, drain timeouts) and
 * every fault the harness injected. The checker judges this history; a failing seed prints the part of it
 * around the violation.
 */
import type { ShardEventEncoded } from "../../src/domain/shard/events.js"

/** Virtual time 0 of the history. A realistic epoch: wall-clock jumps backwards must not reach Go's zero time (a released lease). */
export const EPOCH = Date.parse("2026-03-01T00:00:00Z")

/** `replica-id#incarnation`: a restart with the same id is a new incarnation. */
export type Who = string

export interface PveCall {
  readonly i: number
  readonly t: number
  readonly who: Who
  readonly term: number
  readonly op: string
  readonly args: string
  readonly mutation: boolean
  /** For a clone: the instance ID it names. */
  readonly name?: string | undefined
  /** What a mutation acts on, as the simulated cluster had it when the call started (cross-shard rules). */
  readonly target?: PveTarget | undefined
  /** Index at which a mutation went out to PVE (later than `i` when its replica was paused in between). */
  landedAt?: number | undefined
  /** A clone's outcome as the product saw it (its POST and its task): true when both succeeded. */
  ok?: boolean | undefined
  /** Index at which the product learnt its clone succeeded. */
  okAt?: number | undefined
}

export interface PveTarget {
  readonly vmid?: number | undefined
  /** The VM's `tags` config. */
  readonly tags?: string | undefined
  /** The instance ID the VM is named after, or whose ISO (`nstance-<id>.iso`) the call names. */
  readonly instance?: string | undefined
  /** The VM is an operator's (made behind our back), not ours. */
  readonly foreign?: boolean | undefined
}

export type WriteOutcome = "applied" | "rejected" | "failed" | "ambiguous" | "hung"

export interface StoreWrite {
  readonly i: number
  readonly t: number
  readonly who: Who
  /** The leader term whose work made the write; undefined for the lease's own writes. */
  readonly term: number | undefined
  readonly op: "put" | "delete"
  readonly key: string
  /** Set when the write ends (undefined while in flight or when the writer was interrupted). */
  outcome: WriteOutcome | undefined
  /** Index at which the outcome was decided (the write's bytes are in the store from then on when applied). */
  appliedAt: number | undefined
  /** Virtual time at which the outcome was decided. */
  settledT: number | undefined
  /** Events of a log segment body. */
  readonly seq?: number | undefined
  readonly events?: ReadonlyArray<ShardEventEncoded> | undefined
}

export type MarkKind = "termStart" | "termEnd" | "leaseLost" | "leaseWon" | "crash" | "start"

export interface Mark {
  readonly i: number
  readonly t: number
  readonly who: Who
  readonly kind: MarkKind
  readonly term?: number | undefined
  readonly detail?: string | undefined
}

/** A shard config put in force (the world's start, a push, the heal): what the rules need of it, per group. */
export interface ConfigInForce {
  readonly i: number
  readonly t: number
  readonly shard: string
  readonly sizes: Readonly<Record<string, number>>
  readonly infraHashes: Readonly<Record<string, string>>
  /** Milliseconds a retired instance of the group drains. */
  readonly drainMs: Readonly<Record<string, number>>
}

/** A rule broken at a moment the wrappers saw (an orphan a saga left, a VMID given twice, …). */
export interface Flag {
  readonly i: number
  readonly t: number
  readonly rule: string
  readonly problem: string
}

export interface Line {
  readonly i: number
  readonly t: number
  readonly text: string
}

export interface Sample {
  readonly i: number
  readonly t: number
  readonly problem: string
}

export class History {
  private counter = 0
  readonly lines: Array<Line> = []
  readonly pve: Array<PveCall> = []
  readonly writes: Array<StoreWrite> = []
  readonly marks: Array<Mark> = []
  /** Problems seen while sampling the simulated cluster (two VMs named alike, …). */
  readonly samples: Array<Sample> = []
  /** Rules the wrappers saw broken as the world ran (judged once, like the samples). */
  readonly flags: Array<Flag> = []
  /** The product's own log lines at INFO and above (bounded), for the failure report. */
  readonly productLog: Array<Line> = []
  /** Every config put in force, in order. */
  readonly configs: Array<ConfigInForce> = []
  /** The shard each incarnation belongs to (two-shard worlds; empty when the world has one shard). */
  readonly shardOf = new Map<Who, string>()

  constructor(private readonly now: () => number) {}

  next(): number {
    return ++this.counter
  }

  get index(): number {
    return this.counter
  }

  line(text: string): number {
    const i = this.next()
    this.lines.push({ i, t: this.now(), text })
    return i
  }

  pveStart(who: Who, term: number, op: string, args: string, mutation: boolean, name?: string, target?: PveTarget): PveCall {
    const i = this.next()
    const call: PveCall = { i, t: this.now(), who, term, op, args, mutation, name, target }
    this.pve.push(call)
    if (mutation) this.lines.push({ i, t: call.t, text: `pve ${who} t${term} ${op}(${args})` })
    return call
  }

  write(entry: Omit<StoreWrite, "i" | "t" | "outcome" | "appliedAt" | "settledT">): StoreWrite {
    const i = this.next()
    const w: StoreWrite = { ...entry, i, t: this.now(), outcome: undefined, appliedAt: undefined, settledT: undefined }
    this.writes.push(w)
    return w
  }

  settle(w: StoreWrite, outcome: WriteOutcome): void {
    w.outcome = outcome
    w.appliedAt = this.next()
    w.settledT = this.now()
    if (w.key.startsWith("log/")) {
      const what = w.events === undefined ? "" : ` [${w.events.map((e) => `${e._tag}${"instanceId" in e ? `:${e.instanceId.slice(-6)}` : ""}${"term" in e ? `:${e.term}` : ""}`).join(" ")}]`
      this.lines.push({ i: w.appliedAt, t: this.now(), text: `store ${w.who} t${w.term ?? "-"} ${w.op} ${w.key} → ${outcome}${what}` })
    }
  }

  mark(who: Who, kind: MarkKind, term?: number, detail?: string): number {
    const i = this.next()
    this.marks.push({ i, t: this.now(), who, kind, term, detail })
    this.lines.push({ i, t: this.now(), text: `${kind} ${who}${term === undefined ? "" : ` term ${term}`}${detail === undefined ? "" : ` (${detail})`}` })
    return i
  }

  config(c: Omit<ConfigInForce, "i" | "t">): void {
    const { shard, sizes, infraHashes } = c
    const i = this.next()
    this.configs.push({ ...c, i, t: this.now() })
    const groups = Object.keys(sizes).map((g) => `${g}=${sizes[g]} (${(infraHashes[g] ?? "?").slice(7, 15)})`)
    this.lines.push({ i, t: this.now(), text: `config ${shard} in force: ${groups.join(" ")}` })
  }

  sample(problem: string): void {
    const i = this.next()
    this.samples.push({ i, t: this.now(), problem })
    this.lines.push({ i, t: this.now(), text: `SAMPLE ${problem}` })
  }

  flag(rule: string, problem: string): void {
    const i = this.next()
    this.flags.push({ i, t: this.now(), rule, problem })
    this.lines.push({ i, t: this.now(), text: `FLAG ${rule}: ${problem}` })
  }

  product(text: string): void {
    this.productLog.push({ i: this.counter, t: this.now(), text })
    if (this.productLog.length > 4000) this.productLog.splice(0, 1000)
  }

  /** History lines (and product log lines) within `radius` entries of index `at`. */
  around(at: number, radius = 25): Array<string> {
    const fmt = (l: Line, tag: string) => `${String(l.i).padStart(6)} ${(l.t / 1000).toFixed(3).padStart(9)}s ${tag} ${l.text}`
    const ours = this.lines.filter((l) => Math.abs(l.i - at) <= radius).map((l) => ({ i: l.i, s: fmt(l, "|") }))
    const theirs = this.productLog.filter((l) => Math.abs(l.i - at) <= radius).map((l) => ({ i: l.i + 0.5, s: fmt(l, ":") }))
    return [...ours, ...theirs].sort((a, b) => a.i - b.i).map((x) => x.s)
  }
}

/** The parts of a history the rules read: the whole history, or one shard's part of it. */
export type HistoryView = Pick<History, "pve" | "writes" | "marks" | "samples" | "configs"> & { readonly flags?: ReadonlyArray<Flag> }

/** One shard's part of a two-shard history: its incarnations' PVE calls, store writes and marks, its configs (no samples: those are judged once). */
export const shardView = (h: History, shard: string): HistoryView => {
  const mine = (who: Who) => h.shardOf.get(who) === shard
  return {
    pve: h.pve.filter((c) => mine(c.who)),
    writes: h.writes.filter((w) => mine(w.who)),
    marks: h.marks.filter((m) => mine(m.who)),
    samples: [],
    configs: h.configs.filter((c) => c.shard === shard)
  }
}
