/**
 * A loopback HTTP proxy in front of the real S3 server that can lose the answer to a request the server
 * has already applied: the situation of a timeout or reset after a successful conditional write. The
 * Host header is forwarded unchanged, so SigV4 signatures made for the proxy's address still verify.
 */
import { createServer, request } from "node:http"

export interface DropProxy {
  readonly url: string
  /** The next `n` PUTs are forwarded, applied by the server, and then answered with `answer`. */
  loseNextPuts: (n: number, answer: "reset" | 500) => void
  readonly applied: Array<number>
  close: () => Promise<void>
}

export const startDropProxy = (target: string): Promise<DropProxy> => {
  const upstream = new URL(target)
  let toLose = 0
  let answer: "reset" | 500 = "reset"
  const applied: Array<number> = []
  const server = createServer((req, res) => {
    const lose = req.method === "PUT" && toLose > 0 ? (toLose--, true) : false
    const forward = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (upstreamRes) => {
        if (lose) {
          applied.push(upstreamRes.statusCode ?? 0)
          upstreamRes.resume()
          upstreamRes.on("end", () => {
            if (answer === "reset") req.socket.destroy()
            else {
              res.writeHead(500, { "content-type": "application/xml" })
              res.end("<Error><Code>InternalError</Code><Message>lost</Message></Error>")
            }
          })
          return
        }
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers)
        upstreamRes.pipe(res)
      }
    )
    forward.on("error", () => req.socket.destroy())
    req.pipe(forward)
  })
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resolve({
        url: `http://127.0.0.1:${port}`,
        applied,
        loseNextPuts: (n, how) => {
          toLose = n
          answer = how
        },
        close: () => new Promise((done) => {
          server.closeAllConnections()
          server.close(() => done())
        })
      })
    })
  )
}
