/**
 * `nstance-admin`: the operator's tool. Offline helpers (IDs, ISO and placement previews, config push)
 * and, later, the client of the admin endpoints.
 */
import { Command } from "@effect/cli"
import { configCommand } from "./cli/adminConfig.js"
import { idCommand } from "./cli/adminId.js"
import { isoCommand } from "./cli/adminIso.js"
import { placeCommand } from "./cli/adminPlace.js"
import { runCli } from "./cli/run.js"

const admin = Command.make("nstance-admin").pipe(
  Command.withDescription("Operate nstance: preview ISOs and placements, manage shard config, inspect IDs"),
  Command.withSubcommands([
    configCommand,
    idCommand,
    isoCommand,
    placeCommand
  ])
)

runCli(admin, "nstance-admin")
