/**
 * Scriptable, seeded fault injection: tests and chaos runs say which calls fail, how, and how often, and the
 * simulator misbehaves exactly that way (HTTP errors, lock timeouts, slow or failing tasks, VMID races, nodes
 * dropping out, the whole API going away). Probabilities draw from the simulator's PRNG, so runs replay.
 */
import type { Prng } from "./prng.js"

/** `*` matches one path segment, `**` any number; a RegExp is matched against the API path. */
export type PathPattern = string | RegExp

export interface HttpFaultSpec {
  readonly method?: string
  readonly path: PathPattern
  /** HTTP status to answer with (default 500); ignored for `lockTimeout` and `reset`. */
  readonly status?: number
  /** Status-line / error text (default: a generic PVE-like message). */
  readonly message?: string
  /**
   * `status`: answer at once; `lockTimeout`: hold a worker for the lock timeout, then PVE's lock error; `reset`:
   * drop the connection; `lostAnswer`: do the call (its effect happens), then answer `status` instead of its
   * result, or drop the connection when `status` is 0 — a proxy timing out, a reset after the fork.
   */
  readonly kind?: "status" | "lockTimeout" | "reset" | "lostAnswer"
  readonly probability?: number
  /** Only for the next N matching calls (default: until removed). */
  readonly times?: number
}

export interface TaskFaultSpec {
  /** PVE task type: qmclone, qmconfig, resize, qmstart, qmstop, qmshutdown, qmdestroy, imgcopy, imgdel. */
  readonly type?: string
  readonly vmid?: number
  readonly probability?: number
  readonly times?: number
}

export interface FaultHandle {
  readonly id: number
  readonly remove: () => void
}

export interface InjectedFault {
  readonly at: number
  readonly kind: string
  readonly detail: string
}

export type HttpFaultDecision =
  | { readonly _tag: "Status"; readonly status: number; readonly message: string }
  | { readonly _tag: "LockTimeout" }
  | { readonly _tag: "Reset" }
  /** Serve the call, then answer with `status` (0: a reset) instead of its result. */
  | { readonly _tag: "LostAnswer"; readonly status: number; readonly message: string }

interface Rule<S> {
  readonly id: number
  readonly spec: S
  remaining: number
}

export interface FaultHooks {
  readonly setNodeOnline: (node: string, online: boolean) => void
  readonly resetNodes: () => void
}

const globToRegex = (glob: string): RegExp => {
  const source = glob.split("/").map((segment) =>
    segment === "**" ? ".*" : segment.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("[^/]*")
  ).join("/")
  return new RegExp(`^${source}$`)
}

const matchesPath = (pattern: PathPattern, path: string): boolean =>
  typeof pattern === "string" ? globToRegex(pattern).test(path) : pattern.test(path)

export class FaultController {
  private nextId = 1
  private httpRules: Array<Rule<HttpFaultSpec>> = []
  private slowRules: Array<Rule<TaskFaultSpec & { readonly factor: number }>> = []
  private failRules: Array<Rule<TaskFaultSpec & { readonly message: string }>> = []
  private warnRules: Array<Rule<TaskFaultSpec & { readonly count: number }>> = []
  private partialRules: Array<Rule<TaskFaultSpec>> = []
  private raceRule: Rule<{ readonly probability?: number }> | undefined
  private unavailable: { readonly until: number; readonly mode: "reset" | 503 | 596 } | undefined
  private slowRequestsRule: { readonly until: number; readonly minMs: number; readonly maxMs: number } | undefined
  private readonly log: Array<InjectedFault> = []

  /** `now`: the simulator's clock (default `Date.now`), so windows like `apiUnavailable` follow injected time. */
  constructor(private readonly prng: Prng, private readonly hooks: FaultHooks, private readonly now: () => number = () => Date.now()) {}

  /** Every fault actually injected, in order (tests assert on it; chaos runs print it). */
  get injected(): ReadonlyArray<InjectedFault> {
    return this.log
  }

  private record(kind: string, detail: string) {
    this.log.push({ at: this.now(), kind, detail })
  }

  private add<S>(list: Array<Rule<S>>, spec: S & { readonly times?: number }): FaultHandle {
    const rule: Rule<S> = { id: this.nextId++, spec, remaining: spec.times ?? Number.POSITIVE_INFINITY }
    list.push(rule)
    return { id: rule.id, remove: () => { const i = list.indexOf(rule); if (i >= 0) list.splice(i, 1) } }
  }

  /** Draws against a rule: probability first, then consumes one of its `times`. */
  private fire<S extends { readonly probability?: number }>(list: Array<Rule<S>>, rule: Rule<S>): boolean {
    if (rule.remaining <= 0) return false
    const p = rule.spec.probability ?? 1
    if (p < 1 && this.prng.next() >= p) return false
    rule.remaining--
    if (rule.remaining <= 0) {
      const i = list.indexOf(rule)
      if (i >= 0) list.splice(i, 1)
    }
    return true
  }

  /** HTTP errors (default 500) on matching calls. */
  http(spec: HttpFaultSpec): FaultHandle {
    return this.add(this.httpRules, spec)
  }

  /** Matching calls wait the lock timeout and then fail as PVE does when a config lock is held elsewhere. */
  lockTimeout(spec: Omit<HttpFaultSpec, "kind" | "status" | "message">): FaultHandle {
    return this.add(this.httpRules, { ...spec, kind: "lockTimeout" })
  }

  /** Matching tasks take `factor` times longer. */
  slowTasks(spec: TaskFaultSpec & { readonly factor: number }): FaultHandle {
    return this.add(this.slowRules, spec)
  }

  /** Matching tasks end with `exitstatus` = message (default a QEMU-like error), undoing their effect. */
  failTasks(spec: TaskFaultSpec & { readonly message?: string }): FaultHandle {
    return this.add(this.failRules, { ...spec, message: spec.message ?? "command failed: got unexpected I/O error" })
  }

  /** Matching tasks succeed with `exitstatus` = `WARNINGS: count`. */
  taskWarnings(spec: TaskFaultSpec & { readonly count?: number }): FaultHandle {
    return this.add(this.warnRules, { ...spec, count: spec.count ?? 1 })
  }

  /**
   * Matching tasks end `WARNINGS: 1` with part of their effect missing, as PVE's do when a step they treat
   * as best-effort fails: a destroy (`qmdestroy`) removes the VM's config but keeps one of its disks
   * ("could not remove disk …, check manually").
   */
  partialTasks(spec: TaskFaultSpec): FaultHandle {
    return this.add(this.partialRules, spec)
  }

  /** `GET /cluster/nextid` answers with an ID that another (simulated) user's clone takes right after. */
  nextidRace(spec: { readonly times?: number; readonly probability?: number } = {}): FaultHandle {
    const rule = { id: this.nextId++, spec, remaining: spec.times ?? Number.POSITIVE_INFINITY }
    this.raceRule = rule
    return { id: rule.id, remove: () => { if (this.raceRule === rule) this.raceRule = undefined } }
  }

  nodeOffline(node: string): void {
    this.record("nodeOffline", node)
    this.hooks.setNodeOnline(node, false)
  }

  nodeOnline(node: string): void {
    this.record("nodeOnline", node)
    this.hooks.setNodeOnline(node, true)
  }

  /** The whole API is gone for `forMs`: connections reset, or 503 / 596 answers. */
  apiUnavailable(spec: { readonly forMs: number; readonly mode?: "reset" | 503 | 596 }): void {
    this.unavailable = { until: this.now() + spec.forMs, mode: spec.mode ?? 503 }
  }

  /** Matching calls take effect, but their answer is lost: `status` (default 500; 0 for a connection reset) instead. */
  lostAnswer(spec: Omit<HttpFaultSpec, "kind">): FaultHandle {
    return this.add(this.httpRules, { ...spec, kind: "lostAnswer" })
  }

  /** For `forMs`, every request holds its pveproxy worker `minMs`–`maxMs` before it is served (a loaded pveproxy). */
  slowRequests(spec: { readonly forMs: number; readonly minMs: number; readonly maxMs: number }): void {
    this.slowRequestsRule = { until: this.now() + spec.forMs, minMs: spec.minMs, maxMs: spec.maxMs }
  }

  /** Milliseconds the next request waits before it is served (0 outside a `slowRequests` window). */
  requestDelayMs(): number {
    const rule = this.slowRequestsRule
    if (rule === undefined) return 0
    if (this.now() >= rule.until) {
      this.slowRequestsRule = undefined
      return 0
    }
    return this.prng.int(rule.minMs, rule.maxMs)
  }

  /** Removes every rule and brings all nodes back online; the injected-fault log is kept. */
  reset(): void {
    this.httpRules = []
    this.slowRules = []
    this.failRules = []
    this.warnRules = []
    this.partialRules = []
    this.raceRule = undefined
    this.unavailable = undefined
    this.slowRequestsRule = undefined
    this.hooks.resetNodes()
  }

  // ---- queried by the server and the model ----

  apiDecision(): HttpFaultDecision | undefined {
    if (this.unavailable === undefined) return undefined
    if (this.now() >= this.unavailable.until) {
      this.unavailable = undefined
      return undefined
    }
    const mode = this.unavailable.mode
    this.record("apiUnavailable", String(mode))
    if (mode === "reset") return { _tag: "Reset" }
    return { _tag: "Status", status: mode, message: mode === 503 ? "Service Unavailable" : "Connection timed out" }
  }

  httpDecision(method: string, path: string): HttpFaultDecision | undefined {
    for (const rule of [...this.httpRules]) {
      const spec = rule.spec
      if (spec.method !== undefined && spec.method.toUpperCase() !== method) continue
      if (!matchesPath(spec.path, path)) continue
      if (!this.fire(this.httpRules, rule)) continue
      const kind = spec.kind ?? "status"
      this.record(`http:${kind}`, `${method} ${path}`)
      if (kind === "reset") return { _tag: "Reset" }
      if (kind === "lockTimeout") return { _tag: "LockTimeout" }
      if (kind === "lostAnswer") {
        const lost = spec.status ?? 500
        return { _tag: "LostAnswer", status: lost, message: spec.message ?? (lost === 0 ? "ECONNRESET" : "Internal Server Error (injected after the effect)") }
      }
      const status = spec.status ?? 500
      return { _tag: "Status", status, message: spec.message ?? (status === 500 ? "Internal Server Error (injected)" : "Injected fault") }
    }
    return undefined
  }

  private taskRule<S extends TaskFaultSpec>(list: Array<Rule<S>>, type: string, vmid: number | undefined): S | undefined {
    for (const rule of [...list]) {
      if (rule.spec.type !== undefined && rule.spec.type !== type) continue
      if (rule.spec.vmid !== undefined && rule.spec.vmid !== vmid) continue
      if (this.fire(list, rule)) return rule.spec
    }
    return undefined
  }

  taskSlowFactor(type: string, vmid: number | undefined): number {
    const rule = this.taskRule(this.slowRules, type, vmid)
    if (rule !== undefined) this.record("slowTask", `${type} ${vmid ?? ""} x${rule.factor}`)
    return rule?.factor ?? 1
  }

  taskFailure(type: string, vmid: number | undefined): string | undefined {
    const rule = this.taskRule(this.failRules, type, vmid)
    if (rule !== undefined) this.record("failTask", `${type} ${vmid ?? ""}: ${rule.message}`)
    return rule?.message
  }

  taskWarningCount(type: string, vmid: number | undefined): number {
    const rule = this.taskRule(this.warnRules, type, vmid)
    if (rule !== undefined) this.record("taskWarnings", `${type} ${vmid ?? ""}`)
    return rule?.count ?? 0
  }

  taskPartial(type: string, vmid: number | undefined): boolean {
    const rule = this.taskRule(this.partialRules, type, vmid)
    if (rule !== undefined) this.record("partialTask", `${type} ${vmid ?? ""}`)
    return rule !== undefined
  }

  nextidRaceFires(): boolean {
    const rule = this.raceRule
    if (rule === undefined || rule.remaining <= 0) return false
    const p = rule.spec.probability ?? 1
    if (p < 1 && this.prng.next() >= p) return false
    rule.remaining--
    if (rule.remaining <= 0) this.raceRule = undefined
    return true
  }

  recordRace(vmid: number): void {
    this.record("nextidRace", String(vmid))
  }
}
