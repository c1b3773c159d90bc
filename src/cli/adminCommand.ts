/**
 * The `nstance-admin` command tree: offline helpers (IDs, ISO and placement previews, config push/pull)
 * and the client of a running shard's admin endpoint (status, instances, groups, …). `src/admin.ts` runs it as a process; tests run it in-process.
 */
import { Command } from "@effect/cli"
import { certCommand } from "./adminCert.js"
import { configCommand } from "./adminConfig.js"
import { idCommand } from "./adminId.js"
import { isoCommand } from "./adminIso.js"
import { placeCommand } from "./adminPlace.js"
import { remoteCommands } from "./adminRemote.js"
import { secretCommand } from "./adminSecret.js"
import { stateCommands } from "./adminState.js"

export const adminCommand = Command.make("nstance-admin").pipe(
  Command.withDescription(
    "Operate nstance: see and steer a running shard over its admin endpoint (status, instances, groups, group set/delete, " +
      "instance create/delete, refresh, validate, nonce, watch, adopt; the admin token in NSTANCE_ADMIN_TOKEN, or a tenant's operator " +
      "certificate with --cert-file/--key-file), or offline: issue operator certificates, put and get tenants' secrets, preview ISOs and placements, manage shard config, " +
      "read a shard's state and log from its bucket, inspect IDs"
  ),
  Command.withSubcommands([
    certCommand,
    configCommand,
    idCommand,
    isoCommand,
    placeCommand,
    secretCommand,
    ...stateCommands,
    ...remoteCommands
  ])
)
