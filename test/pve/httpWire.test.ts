/**
 * ProxmoxApiHttp against a scripted local server: malformed answers become PveDecodeError naming the
 * endpoint and field, a message sent only in the status line (as real pveproxy does) is read, and request
 * bodies are form-encoded exactly as PVE expects.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Redacted } from "effect"
import { ProxmoxApiHttp } from "../../src/layers/ProxmoxApiHttp.js"
import { clientFor } from "./support.js"

interface Seen {
  readonly method: string
  readonly url: string
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

interface Scripted {
  readonly status: number
  readonly reason?: string
  readonly body: string
}

/** A loopback server answering each path from `script`; records every request. */
const scriptedServer = (script: (method: string, path: string) => Scripted) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ readonly url: string; readonly seen: Array<Seen>; readonly server: http.Server }>((resolve) => {
        const seen: Array<Seen> = []
        const server = http.createServer((req, res) => {
          const chunks: Array<Buffer> = []
          req.on("data", (c: Buffer) => chunks.push(c))
          req.on("end", () => {
            const url = req.url ?? "/"
            seen.push({ method: req.method ?? "", url, headers: req.headers, body: Buffer.concat(chunks).toString("latin1") })
            const answer = script(req.method ?? "", url.replace(/^\/api2\/json/, "").split("?")[0] ?? "")
            res.statusCode = answer.status
            if (answer.reason !== undefined) res.statusMessage = answer.reason
            res.setHeader("Content-Type", "application/json;charset=UTF-8")
            res.end(answer.body)
          })
        })
        server.listen(0, "127.0.0.1", () => {
          const port = (server.address() as AddressInfo).port
          resolve({ url: `http://127.0.0.1:${port}/api2/json`, seen, server })
        })
      })
    ),
    ({ server }) => Effect.promise(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  )

const UPID = "UPID:pve1:00001000:00000001:6790A1B2:qmconfig:101:nstance@pve!tok:"

const answers = (method: string, path: string): Scripted => {
  if (path === "/cluster/resources") return { status: 200, body: JSON.stringify({ data: [{ id: "qemu/100", type: "qemu", vmid: 100, node: "pve1", status: "running" }, { id: "qemu/x", type: "qemu", vmid: "one-hundred-one", node: "pve1", status: "running" }] }) }
  if (path === "/version") return { status: 200, body: "<html>captive portal</html>" }
  if (path === "/cluster/status") return { status: 200, body: JSON.stringify({ nodata: [] }) }
  if (path === "/nodes/pve1/qemu/123/status/current") return { status: 500, reason: "unable to find configuration file for VM 123 on node 'pve1'", body: JSON.stringify({ data: null }) }
  if (path === "/nodes/pve1/qemu/101/status/current") return { status: 500, reason: "VM 101 qmp command 'query-status' failed - got timeout", body: "" }
  if (method === "POST" && path === "/nodes/pve1/qemu/101/config") return { status: 200, body: JSON.stringify({ data: UPID }) }
  if (method === "PUT" && path === "/nodes/pve1/qemu/101/resize") return { status: 200, body: JSON.stringify({ data: null }) }
  if (method === "DELETE" && path.startsWith("/nodes/pve1/storage/local/content/")) return { status: 200, body: JSON.stringify({ data: UPID }) }
  return { status: 501, reason: `Method '${method} ${path}' not implemented`, body: "" }
}

const setup = Effect.gen(function* () {
  const server = yield* scriptedServer(answers)
  const { api } = yield* clientFor({
    apiUrl: server.url, tokenId: "nstance@pve!tok", tokenSecret: "s3cret",
    retry: { attempts: 3, baseDelay: "1 millis", maxDelay: "5 millis" }
  })
  return { api, seen: server.seen }
})

describe("malformed answers", () => {
  it.scopedLive("a field of the wrong type is a PveDecodeError naming endpoint and field", () =>
    Effect.gen(function* () {
      const { api } = yield* setup
      const error = yield* Effect.flip(api.vmResources())
      expect(error._tag).toBe("PveDecodeError")
      if (error._tag === "PveDecodeError") {
        expect([error.endpoint, error.field]).toEqual(["GET /cluster/resources", "data[1].vmid"])
        expect(error.message).toMatch(/^GET \/cluster\/resources: unexpected PVE answer at data\[1\]\.vmid: /)
      }
    }))

  it.scopedLive("a body that is not JSON, or lacks `data`, is a PveDecodeError too (not retried)", () =>
    Effect.gen(function* () {
      const { api, seen } = yield* setup
      const html = yield* Effect.flip(api.version())
      expect(html._tag === "PveDecodeError" && [html.field, html.problem]).toEqual(["(body)", 'not JSON: "<html>captive portal</html>"'])
      const noData = yield* Effect.flip(api.clusterStatus())
      expect(noData._tag === "PveDecodeError" && noData.field).toBe("data")
      expect(seen.filter((s) => s.url.includes("/version"))).toHaveLength(1)
    }))
})

describe("PVE's message in the status line", () => {
  it.scopedLive("is read from the reason phrase when the body has none, and classified from it", () =>
    Effect.gen(function* () {
      const { api, seen } = yield* setup
      const missing = yield* Effect.flip(api.vmStatus("pve1", 123))
      expect(missing._tag === "PveApiError" && [missing.status, missing.pveMessage, missing.classification, missing.attempts])
        .toEqual([500, "unable to find configuration file for VM 123 on node 'pve1'", "notFound", 1])
      const timeout = yield* Effect.flip(api.vmStatus("pve1", 101))
      expect(timeout._tag === "PveApiError" && [timeout.classification, timeout.attempts]).toEqual(["transient", 3])
      expect(seen.filter((s) => s.url.endsWith("/101/status/current"))).toHaveLength(3)
    }))
})

describe("requests on the wire", () => {
  it.scopedLive("token header, form-encoded body with 0/1 booleans and `;`/`=`/`,` escaped, encoded volume ids", () =>
    Effect.gen(function* () {
      const { api, seen } = yield* setup
      yield* api.updateConfig("pve1", 101, { onboot: false, tags: "nstance;c1;s1", net0: "virtio,bridge=vmbr0,tag=100", cores: 2, delete: ["ide0", "sata1"] })
      const post = seen.find((s) => s.method === "POST")
      expect(post?.headers["authorization"]).toBe("PVEAPIToken=nstance@pve!tok=s3cret")
      expect(post?.headers["content-type"]).toBe("application/x-www-form-urlencoded")
      expect(new URLSearchParams(post?.body ?? "").toString()).toBe(post?.body)
      expect(Object.fromEntries(new URLSearchParams(post?.body ?? ""))).toEqual({
        cores: "2", net0: "virtio,bridge=vmbr0,tag=100", onboot: "0", tags: "nstance;c1;s1", delete: "ide0,sata1"
      })
      // pveproxy splits pairs on `&` and `;` and a value ends at a second `=`: none may appear raw.
      expect(post?.body).not.toMatch(/[;,]/)
      for (const pair of (post?.body ?? "").split("&")) expect(pair.split("=")).toHaveLength(2)
      expect(Option.isNone(yield* api.resize("pve1", 101, "scsi0", "+10G"))).toBe(true)
      yield* api.deleteVolume("pve1", "local", "local:iso/nstance-x.iso")
      expect(seen.find((s) => s.method === "DELETE")?.url).toBe("/api2/json/nodes/pve1/storage/local/content/local%3Aiso%2Fnstance-x.iso")
    }))
})

describe("settings", () => {
  it.scopedLive("a Redacted secret is accepted; bad settings fail the layer with a one-line error naming the field", () =>
    Effect.gen(function* () {
      const server = yield* scriptedServer(answers)
      const { api } = yield* clientFor({ apiUrl: `${server.url}/`, tokenId: "nstance@pve!tok", tokenSecret: Redacted.make("s3cret") })
      yield* api.updateConfig("pve1", 101, { cores: 1 })
      expect(server.seen[0]?.headers["authorization"]).toBe("PVEAPIToken=nstance@pve!tok=s3cret")
      expect(server.seen[0]?.url).toBe("/api2/json/nodes/pve1/qemu/101/config")
      const bad = [
        [{ apiUrl: "ftp://pve:8006", tokenId: "a@pve!t", tokenSecret: "x" }, "Proxmox API settings: apiUrl must be an http(s) URL, got \"ftp://pve:8006\""],
        [{ tokenId: "nstance-token", tokenSecret: "x" }, "Proxmox API settings: tokenId must look like user@realm!tokenid, got \"nstance-token\""],
        [{ tokenId: "a@pve!t", tokenSecret: " " }, "Proxmox API settings: tokenSecret is empty"]
      ] as const
      for (const [settings, message] of bad) {
        const exit = yield* Effect.exit(Effect.scoped(Layer.build(ProxmoxApiHttp(settings))))
        expect(Exit.isFailure(exit) && Exit.causeOption(exit).pipe(Option.map((c) => String(c).includes(message)), Option.getOrElse(() => false))).toBe(true)
      }
    }))
})
