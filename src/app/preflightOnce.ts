/**
 * `nstance-server --validate` with the bucket's config: the leader's preflight against PVE, once, with the
 * `PROXMOX_*` connection the daemon would use and the config's TLS choice and request timeout. Transient
 * failures are retried once only: a one-shot check should answer in seconds when PVE is away (and the
 * client's log lines are left out: every failed call is a finding already).
 */
import { Effect, Logger, LogLevel } from "effect"
import type { ProxmoxEnv, ShardConfig } from "../domain/config/index.js"
import type { PreflightReport } from "../domain/pve/preflight.js"
import { ProxmoxApiHttp, type PveSettingsError } from "../layers/ProxmoxApiHttp.js"
import { runPreflight } from "../shard/Preflight.js"

export const preflightOnce = (config: ShardConfig, proxmox: ProxmoxEnv): Effect.Effect<PreflightReport, PveSettingsError> =>
  runPreflight(config).pipe(
    Effect.provide(ProxmoxApiHttp({
      apiUrl: proxmox.apiUrl,
      tokenId: proxmox.tokenId,
      tokenSecret: proxmox.tokenSecret,
      insecureTls: config.shard.infra.options.insecureTls,
      requestTimeout: config.shard.requestTimeout,
      retry: { attempts: 2 }
    })),
    // The report says what failed, in one line per call; the client's retry warnings would only repeat it.
    Logger.withMinimumLogLevel(LogLevel.None)
  )
