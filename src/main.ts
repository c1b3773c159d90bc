/** `nstance-server`: the daemon's entry point (flags, config check; the daemon itself arrives in later issues). */
import { runCli } from "./cli/run.js"
import { serverCommand } from "./cli/server.js"

runCli(serverCommand, "nstance-server")
