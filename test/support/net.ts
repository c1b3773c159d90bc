/** Loopback helpers for tests that need an address where nothing answers. */
import { createServer, type Server } from "node:net"

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

/**
 * `count` ports free on 127.0.0.1, all different: every listener stays bound until the last one is, so the
 * OS cannot hand the same port out twice (separate `closedPort` calls can, once the first is closed).
 */
export const closedPorts = async (count: number): Promise<ReadonlyArray<number>> => {
  const listeners = await Promise.all(Array.from({ length: count }, () =>
    new Promise<Server>((resolve, reject) => {
      const listener = createServer()
      listener.once("error", reject)
      listener.listen(0, "127.0.0.1", () => resolve(listener))
    })))
  const ports = listeners.map((listener) => {
    const address = listener.address()
    return typeof address === "object" && address !== null ? address.port : 0
  })
  await Promise.all(listeners.map((listener) => new Promise<void>((resolve) => listener.close(() => resolve()))))
  return ports
}

/** The five endpoint ports of one daemon, all different. */
export const daemonPorts = async (): Promise<{ health: number; election: number; registration: number; operator: number; agent: number }> => {
  const [health, election, registration, operator, agent] = await closedPorts(5)
  return { health: health!, election: election!, registration: registration!, operator: operator!, agent: agent! }
}
