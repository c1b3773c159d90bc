/**
 * The `nstance-admin` command tree: offline helpers (IDs, ISO and placement previews, config push/pull)
 * and, later, the client of the admin endpoints. `src/admin.ts` runs it as a process; tests run it in-process.
 */
import { Command } from "@effect/cli"
import { configCommand } from "./adminConfig.js"
import { idCommand } from "./adminId.js"
import { isoCommand } from "./adminIso.js"
import { placeCommand } from "./adminPlace.js"
import { stateCommands } from "./adminState.js"

export const adminCommand = Command.make("nstance-admin").pipe(
  Command.withDescription("Operate nstance: preview ISOs and placements, manage shard config, read a shard's state and log, inspect IDs"),
  Command.withSubcommands([
    configCommand,
    idCommand,
    isoCommand,
    placeCommand,
    ...stateCommands
  ])
)
