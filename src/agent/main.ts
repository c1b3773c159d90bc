/** `nstance-agent`: the agent on a VM nstance created (the command is in `agent/agentCommand.ts`). */
import { runCli } from "../cli/run.js"
import { agentCommand } from "./agentCommand.js"

runCli(agentCommand, "nstance-agent")
