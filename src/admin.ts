/** `nstance-admin`: the operator's tool (the command tree is in `cli/adminCommand.ts`). */
import { adminCommand } from "./cli/adminCommand.js"
import { runCli } from "./cli/run.js"

runCli(adminCommand, "nstance-admin")
