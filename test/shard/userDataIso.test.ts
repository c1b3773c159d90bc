/**
 * Issue 22, end to end: the daemon (registration on) creates VMs on the HTTP simulator, which keeps every
 * uploaded ISO under `volumesDir`; the ISO each VM boots is read back with `isoinfo` (genisoimage — a reader
 * this project does not use) and carries the user-data rendered for that VM — inline, `base64+gzip` and
 * `source: "url"` (served from 127.0.0.1), with `.Vars` merged defaults → template → group, the nonce and
 * the cluster CA the agent part carries too — and a group's templated arg (`DiskSize`) is rendered into the
 * VM. A URL answering 404 is retried as a transient step failure: no compensation, no VM, more GETs. The
 * nonce appears in no log line. Fails (does not skip) without isoinfo.
 */
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { gzipSync } from "node:zlib"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Logger, Stream } from "effect"
import { runDaemon } from "../../src/app/daemon.js"
import { freeLoopbackPorts } from "../../src/app/embedded.js"
import { CONFIG_KEY } from "../../src/domain/bucketKeys.js"
import type { ShardEventEncoded } from "../../src/domain/shard/events.js"
import { allInstances, type Instance } from "../../src/domain/shard/state.js"
import { agentRegistrationOf, mimeParts } from "../../src/domain/shard/userData.js"
import { replayStore } from "../../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { PveSimulator } from "../../src/sim/server.js"
import { FAST_ELECTION } from "../support/daemonProcess.js"

const PREFIX = "shard/pve-a/"

/** The ISO's user-data as `isoinfo -R -x /user-data` extracts it; an error (not a skip) when isoinfo is missing. */
const isoinfoUserData = (iso: string): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile("isoinfo", ["-R", "-x", "/user-data", "-i", iso], { encoding: "buffer", timeout: 20_000 }, (error, stdout, stderr) => {
      if (error === null) return resolve(stdout.toString("utf8"))
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return reject(new Error("isoinfo is not installed: this test needs it (apt-get install genisoimage)"))
      reject(new Error(`isoinfo -R -x /user-data -i ${iso} failed: ${stderr.toString()}`))
    })
  })

/** One template for all three sources: every field of the data, vars in key order, the nonce and the CA. */
const TEMPLATE = [
  "#!/bin/sh",
  "# {{ .Instance.ID }} {{ .Instance.Kind }} {{ .Instance.Arch }} [{{ .Instance.Type }}]",
  "# {{ .Cluster.ID }} {{ .Server.Shard }} {{ .Server.RegistrationAddr }} {{ .Server.AgentAddr }} {{ .Server.OperatorAddr }}",
  "# {{ .Provider.Kind }} {{ .Provider.Region }} {{ .Provider.Zone }} missing=[{{ .Vars.Nope }}][{{ .Image.debian }}]",
  "{{- range $k, $v := .Vars }}",
  "export {{ $k }}={{ $v | printf \"%q\" }}",
  "{{- end }}",
  "{{ if eq .Vars.Tier \"remote\" }}echo from-url{{ else }}echo from-config{{ end }}",
  "echo '{{ .Nonce }}' > /run/nonce",
  "cat > /run/ca.pem <<'PEM'",
  "{{ .Cluster.CACert }}PEM",
  ""
].join("\n")

interface Expected {
  readonly kind: string
  readonly type: string
  readonly vars: Readonly<Record<string, string>>
}

/** What TEMPLATE renders to for one VM, written out by hand. */
const rendered = (id: string, e: Expected, registrationAddr: string, nonce: string, ca: string) =>
  [
    "#!/bin/sh",
    `# ${id} ${e.kind} amd64 [${e.type}]`,
    `# acme pve-a ${registrationAddr} 10.9.9.9:8994 10.9.9.9:8993`,
    "# proxmox dc1 zone-a missing=[][]",
    ...Object.keys(e.vars).sort().map((key) => `export ${key}=${JSON.stringify(e.vars[key])}`),
    e.vars["Tier"] === "remote" ? "echo from-url" : "echo from-config",
    `echo '${nonce}' > /run/nonce`,
    "cat > /run/ca.pem <<'PEM'",
    `${ca}PEM`,
    ""
  ].join("\n")

const serve = (routes: Readonly<Record<string, string>>) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Server; readonly base: string; readonly hits: Map<string, number> }>((resume) => {
      const hits = new Map<string, number>()
      const server = createServer((req, res) => {
        const path = req.url ?? ""
        hits.set(path, (hits.get(path) ?? 0) + 1)
        const body = routes[path]
        if (body === undefined) res.writeHead(404).end("no such user-data")
        else res.writeHead(200, { "content-type": "text/x-shellscript" }).end(body)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits })))
    }),
    ({ server }) => Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  )

describe("user-data templates in the ISOs the VMs boot (daemon, HTTP simulator, isoinfo)", () => {
  it.scopedLive("inline, base64+gzip and url user-data are rendered per VM; a 404 URL is retried, not compensated", () =>
    Effect.gen(function* () {
      const web = yield* serve({ "/user-data.sh": TEMPLATE })
      const volumes = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "nstance-userdata-iso-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const sim = yield* PveSimulator({ nodes: 3, http: true, volumesDir: volumes })
      const [health, election, registration, operator, agent] = yield* freeLoopbackPorts(5)
      const ports = { health: health!, election: election!, registration: registration!, operator: operator!, agent: agent! }
      const registrationAddr = `127.0.0.1:${ports.registration}`
      const config = {
        cluster: { id: "acme" },
        shard: {
          id: "pve-a",
          infra: { provider: "proxmox", region: "dc1", zone: "zone-a", options: { cloud_init_iso_storage: "local" } },
          bind: {
            health_addr: `127.0.0.1:${ports.health}`, election_addr: `127.0.0.1:${ports.election}`, registration_addr: registrationAddr,
            operator_addr: `127.0.0.1:${ports.operator}`, agent_addr: `127.0.0.1:${ports.agent}`
          },
          advertise: {
            health_addr: `127.0.0.1:${ports.health}`, election_addr: `127.0.0.1:${ports.election}`, registration_addr: registrationAddr,
            operator_addr: "10.9.9.9:8993", agent_addr: "10.9.9.9:8994"
          },
          subnet_pools: { default: ["vmbr0"] },
          leader_election: FAST_ELECTION,
          garbage_collection: { interval: "1m", registration_timeout: "10m" }
        },
        defaults: {
          args: { StoragePool: "local-lvm", TemplateName: "debian-13-template", Cores: 1, Memory: 512 },
          vars: { Env: "prod", Tier: "default", Disk: "3G" }
        },
        templates: {
          inline: { kind: "inl", subnet_pool: "default", instance_type: "cpu:1,memory:512", vars: { Tier: "inline" }, userdata: { content: TEMPLATE } },
          packed: { kind: "pak", subnet_pool: "default", vars: { Tier: "packed" }, userdata: { encoding: "base64+gzip", content: gzipSync(TEMPLATE).toString("base64") } },
          remote: { kind: "rem", subnet_pool: "default", vars: { Tier: "remote" }, userdata: { source: "url", content: `${web.base}/user-data.sh` } },
          broken: { kind: "brk", subnet_pool: "default", userdata: { source: "url", content: `${web.base}/missing.sh` } }
        },
        groups: {
          shop: {
            a: { template: "inline", size: 1, vars: { Color: "red" } },
            b: { template: "packed", size: 1, vars: { Color: "green", Env: "staging" }, args: { DiskSize: "{{ .Vars.Disk }}" } },
            c: { template: "remote", size: 1, vars: { Color: "blue" } },
            d: { template: "broken", size: 1 }
          }
        }
      }
      const expected: Readonly<Record<string, Expected>> = {
        a: { kind: "inl", type: "cpu:1,memory:512", vars: { Env: "prod", Tier: "inline", Disk: "3G", Color: "red" } },
        b: { kind: "pak", type: "", vars: { Env: "staging", Tier: "packed", Disk: "3G", Color: "green" } },
        c: { kind: "rem", type: "", vars: { Env: "prod", Tier: "remote", Disk: "3G", Color: "blue" } }
      }

      const store = makeMemoryStore()
      const shardStore = scopeStore(store, PREFIX)
      yield* shardStore.put(CONFIG_KEY, new TextEncoder().encode(JSON.stringify(config)))
      const logs: Array<string> = []
      const capture = Logger.make((options) => { logs.push(Logger.logfmtLogger.log(options)) })
      const daemon = yield* runDaemon({
        id: "replica-1",
        advertiseHost: "127.0.0.1",
        prefix: PREFIX,
        store: Layer.succeed(ObjectStore, store),
        config: { _tag: "Store", key: CONFIG_KEY },
        proxmox: { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret },
        encryptionKey: new Uint8Array(randomBytes(32))
      }).pipe(Effect.scoped, Effect.provide(Logger.replace(Logger.defaultLogger, capture)), Effect.forkScoped)

      const events = Effect.gen(function* () {
        const keys = yield* shardStore.list("log/").pipe(Stream.runCollect, Effect.map((c) => Chunk.toReadonlyArray(c).map((m) => m.key)))
        const out: Array<ShardEventEncoded> = []
        for (const key of keys) {
          const segment = JSON.parse(new TextDecoder().decode((yield* shardStore.get(key)).body)) as { events: Array<ShardEventEncoded> }
          out.push(...segment.events)
        }
        return out
      }).pipe(Effect.orDie)
      const instances = replayStore(shardStore).pipe(Effect.map((r) => allInstances(r.state)), Effect.orDie)
      const brokenFailures = (list: ReadonlyArray<Instance>, all: ReadonlyArray<ShardEventEncoded>) => {
        const broken = list.find((i) => i.group === "d")
        return all.filter((e) => e._tag === "StepFailed" && "instanceId" in e && e.instanceId === broken?.id)
      }
      const deadline = Date.now() + 25_000
      for (;;) {
        const list = yield* instances
        const running = list.filter((i) => i.group !== "d" && i.phase === "running")
        if (running.length === 3 && brokenFailures(list, yield* events).length >= 2) break
        if (Date.now() > deadline) {
          return yield* Effect.dieMessage(`not converged in 25 s: ${list.map((i) => `${i.group}:${i.phase}`).join(", ")}\n${logs.slice(-30).join("\n")}`)
        }
        yield* Effect.sleep("100 millis")
      }

      const list = yield* instances
      const vms = [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1")
      expect(vms).toHaveLength(3)
      const nonces: Array<string> = []
      for (const group of ["a", "b", "c"] as const) {
        const instance = list.find((i) => i.group === group)!
        const vm = vms.find((v) => v.config.get("name") === instance.id)!
        const ide2 = vm.config.get("ide2") ?? ""
        expect(ide2).toBe(`local:iso/nstance-${instance.id}.iso,media=cdrom`)
        const file = join(volumes, vm.node, "local", "template", "iso", `nstance-${instance.id}.iso`)
        // The file is the volume the VM boots, byte for byte.
        expect(new Uint8Array(readFileSync(file))).toEqual(sim.model.volume(vm.node, `local:iso/nstance-${instance.id}.iso`)?.data)
        const userData = yield* Effect.promise(() => isoinfoUserData(file))
        const agent = agentRegistrationOf(userData)
        expect(agent?.registrationUrl).toBe(`https://${registrationAddr}/agent`)
        expect(agent?.nonce).toMatch(/^ey[\w-]+\.[\w-]+\.[\w-]+$/)
        expect(agent?.caPem).toMatch(/^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/)
        nonces.push(agent!.nonce)
        const part = (mimeParts(userData) ?? []).find((p) => (p.headers["content-disposition"] ?? "").includes("template-user-data"))
        expect(part?.headers["content-type"]).toBe("text/x-shellscript; charset=\"utf-8\"")
        expect(part?.body.trimEnd()).toBe(rendered(instance.id, expected[group]!, registrationAddr, agent!.nonce, agent!.caPem).trimEnd())
      }
      // Group b's templated DiskSize arg, rendered from its vars, grew the disk.
      const bVm = vms.find((v) => v.config.get("name") === list.find((i) => i.group === "b")!.id)!
      expect(bVm.config.get("scsi0")).toMatch(/size=3G/)

      // The 404: transient failures of the ISO step, retried; never compensated, no VM, no ISO.
      const all = yield* events
      const broken = list.find((i) => i.group === "d")!
      expect(broken.phase).toBe("templated")
      const failures = brokenFailures(list, all)
      for (const failure of failures) {
        expect(failure).toMatchObject({ step: "iso", errorClass: "transient", message: `user-data from ${web.base}/missing.sh: HTTP 404 (only 200 is accepted)` })
      }
      expect(all.filter((e) => e._tag === "DeleteRequested")).toEqual([])
      expect(web.hits.get("/missing.sh")).toBeGreaterThanOrEqual(2)
      expect(web.hits.get("/user-data.sh")).toBe(1)

      // The nonces went into the ISOs and nowhere else.
      expect(logs.length).toBeGreaterThan(10)
      for (const nonce of nonces) expect(logs.filter((line) => line.includes(nonce))).toEqual([])
      yield* Fiber.interrupt(daemon)
    }), { timeout: 45_000 })
})
