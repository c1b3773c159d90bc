/** `nstance-pve-sim`: runs the simulator command (`sim/command.ts`) as a process. */
import { runCli } from "../cli/run.js"
import { simCommand } from "./command.js"

runCli(simCommand, "nstance-pve-sim")
