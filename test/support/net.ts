/** Loopback helpers for tests that need an address where nothing answers. */
import { createServer } from "node:net"
import { Effect } from "effect"
import { freeLoopbackPorts } from "../../src/app/embedded.js"

/** A loopback port that nothing listens on: bind one, then close it. */
export const closedPort = () =>
  new Promise<number>((resolve, reject) => {
    const listener = createServer()
    listener.once("error", reject)
    listener.listen(0, "127.0.0.1", () => {
      const address = listener.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      listener.close(() => resolve(port))
    })
  })

/** The five endpoint ports of one daemon, all different. */
export const daemonPorts = async (): Promise<{ health: number; election: number; registration: number; operator: number; agent: number }> => {
  const [health, election, registration, operator, agent] = await Effect.runPromise(freeLoopbackPorts(5))
  return { health: health!, election: election!, registration: registration!, operator: operator!, agent: agent! }
}
