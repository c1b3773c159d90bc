/** Shared set-up for the ProxmoxApi tests: a simulator plus an HTTP client (with metrics) pointed at it. */
import { Context, Effect, Layer } from "effect"
import { ProxmoxApiHttp, type ProxmoxApiSettings } from "../../src/layers/ProxmoxApiHttp.js"
import { makePveCallsReader } from "../../src/metrics/metrics.js"
import { ProxmoxApi } from "../../src/services/ProxmoxApi.js"
import { PveSimulator, type RunningSimulator, type SimulatorOptions } from "../../src/sim/server.js"

/** Fast schedules so retry and polling tests take milliseconds, not seconds. */
export const fastSettings = (sim: RunningSimulator, overrides: Partial<ProxmoxApiSettings> = {}): ProxmoxApiSettings => ({
  apiUrl: sim.url,
  tokenId: sim.tokenId,
  tokenSecret: sim.tokenSecret,
  insecureTls: true,
  retry: { attempts: 5, baseDelay: "2 millis", maxDelay: "20 millis" },
  taskPoll: { initial: "2 millis", factor: 1.5, max: "20 millis" },
  taskTimeout: "20 seconds",
  ...overrides
})

export const clientFor = (settings: ProxmoxApiSettings) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(ProxmoxApiHttp(settings))
    // The PVE calls made from here on (the metric registry is process-wide; tests in a file run one by one).
    const metrics = yield* makePveCallsReader
    return { api: Context.get(context, ProxmoxApi), metrics }
  })

export const setup = (simOptions: SimulatorOptions = {}, overrides: Partial<ProxmoxApiSettings> = {}) =>
  Effect.gen(function* () {
    const sim = yield* PveSimulator({ nodes: 3, ...simOptions })
    const { api, metrics } = yield* clientFor(fastSettings(sim, overrides))
    return { sim, api, metrics }
  })

/** Requests the simulator saw for one endpoint template, e.g. `GET /cluster/resources`. */
export const seen = (sim: RunningSimulator, endpoint: string, since = 0): number =>
  sim.model.requests.filter((r) => r.at >= since && (r.endpoint ?? `${r.method} ${r.path}`) === endpoint).length
