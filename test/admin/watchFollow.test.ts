/**
 * Issue 28: `nstance-admin watch` used to exit at a leader change (its stream belongs to one term). Real
 * processes: two `nstance-server` replicas of one shard on a file store and the HTTP simulator (127.0.0.1 and
 * 127.0.0.2, same ports, each with its own local config), and the compiled `nstance-admin watch` pointed at
 * the standby. The leader is stopped; the watch finds the new one, says so in one line, and goes on printing.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted, Schedule } from "effect"
import { watchFollowingLeader } from "../../src/admin/watchFollow.js"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { startSimulator } from "../../src/sim/server.js"
import { runCommand } from "../support/cli.js"
import { daemonConfigText, type DaemonProcess, startProcess, startServerProcess } from "../support/daemonProcess.js"
import { closedPort, daemonPorts } from "../support/net.js"
import { makeAdminWorld, TOKEN } from "./harness.js"
import { randomBytes } from "node:crypto"
import { pkiObjectKeys } from "../../src/domain/bucketKeys.js"

const WATCH_EVENT = /^\{"seq":\d+,/

describe("nstance-admin watch at a leader change", () => {
  it("follows the new leader, printing one line when it switches, and keeps printing its events", async () => {
    const sim = await startSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 })
    const dir = mkdtempSync(join(tmpdir(), "nstance-watch-"))
    const processes: Array<DaemonProcess> = []
    try {
      const ports = await daemonPorts()
      // The encryption key turns the cluster PKI on: the operator endpoints serve TLS with certificates from its CA.
      const env = {
        PROXMOX_API_URL: sim.url, PROXMOX_TOKEN_ID: sim.tokenId, PROXMOX_TOKEN_SECRET: sim.tokenSecret, NSTANCE_ADMIN_TOKEN: Redacted.value(TOKEN),
        NSTANCE_ENCRYPTION_KEY: randomBytes(32).toString("hex")
      }
      const start = (id: string, host: string) => {
        const config = join(dir, `${id}.jsonc`)
        writeFileSync(config, daemonConfigText({ host, ports }))
        const daemon = startServerProcess(
          ["--storage", "file", "--bucket", join(dir, "bucket"), "--shard", "pve-a", "--id", id, "--config", config, "--advertise-host", host, "--log-format", "json"],
          env
        )
        processes.push(daemon)
        return { daemon, address: `${host}:${ports.operator}` }
      }
      const replicas = [start("replica-1", "127.0.0.1"), start("replica-2", "127.0.0.2")]
      const started = (r: (typeof replicas)[number]) => r.daemon.messages.some((m) => /^cluster read: /.test(m))
      const follows = (r: (typeof replicas)[number]) => r.daemon.messages.some((m) => /^lease: following replica-\d \(term 1\)$/.test(m))
      await replicas[0]!.daemon.waitFor("a leader with its term started and a standby", () => replicas.some(started) && replicas.some(follows), 25_000)
      const leader = replicas.find(started)!
      const standby = replicas.find((r) => r !== leader)!
      // The CA is public: an operator copies it from the bucket.
      const caFile = join(dir, "bucket", pkiObjectKeys("acme-prod").caCert)
      const admin = (args: ReadonlyArray<string>) =>
        runCommand(adminCommand, "nstance-admin", [...args, "--server", standby.address], { env: { NSTANCE_ADMIN_TOKEN: Redacted.value(TOKEN), NSTANCE_CA_FILE: caFile, NSTANCE_ADMIN_ADDR: undefined } })

      // Pointed at the standby: it is sent on to the leader.
      const watch = startProcess("bin/nstance-admin.js", ["watch", "--json", "--server", standby.address], { NSTANCE_ADMIN_TOKEN: Redacted.value(TOKEN), NSTANCE_CA_FILE: caFile })
      processes.push(watch)
      const notes = () => watch.stderr().split("\n").filter((line) => line !== "")
      const events = () => watch.stdout().split("\n").filter((line) => WATCH_EVENT.test(line)).length
      await watch.waitFor("the watch to find the leader", () => notes().length > 0)
      expect(notes()).toEqual([expect.stringMatching(new RegExp(`^watching the leader replica-\\d \\(term 1\\) at ${leader.address.replaceAll(".", "\\.")}; Ctrl-C to stop$`))])
      expect((await admin(["instance", "create", "storefront/web"])).status).toBe(0)
      await watch.waitFor("an event from the first leader", () => events() > 0)

      leader.daemon.signal("SIGTERM")
      expect(await leader.daemon.exited).toEqual({ status: 0, signal: null })
      await watch.waitFor("the switch", () => notes().length === 2, 25_000)
      expect(notes()[1]).toMatch(new RegExp(
        `^the leader changed: now watching replica-\\d \\(term 2\\) at ${standby.address.replaceAll(".", "\\.")}; ` +
          "(changes after seq \\d+ up to seq \\d+ may not have been shown|nothing was missed)$"
      ))
      const before = events()
      expect((await admin(["instance", "create", "storefront/web"])).status).toBe(0)
      await watch.waitFor("events from the new leader", () => events() > before)
      expect(watch.child.exitCode).toBeNull()
      watch.signal("SIGINT")
      expect(await watch.exited).toEqual({ status: 0, signal: null })
    } finally {
      for (const p of processes) p.signal("SIGKILL")
      await sim.close()
      rmSync(dir, { recursive: true, force: true })
    }
  // Two daemons and a watch process on 1 s renewals: a loaded machine can cost the first leader a term, so
  // the waits are generous; on a quiet one the test takes 5 s.
  }, 50_000)
})

describe("watchFollowingLeader's bounds (in-process)", () => {
  const silent = { event: () => Effect.void, note: () => Effect.void }

  it.live("no replica answering: it gives up after its schedule with the one line of the last failure", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(closedPort)
      const error = yield* Effect.flip(watchFollowingLeader(`127.0.0.1:${port}`, { token: TOKEN, caPem: "" }, silent, Schedule.recurs(2)))
      expect(error.message).toBe(`no admin endpoint answers at 127.0.0.1:${port} (connection refused); is nstance-server running there with an admin token?`)
    }))

  it.scopedLive("refused credentials are not retried", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0 })
      const error = yield* Effect.flip(watchFollowingLeader(world.leader.address, { ...world.credentials, token: Redacted.make("a-wrong-token-of-enough-length") }, silent, Schedule.forever))
      expect(error._tag).toBe("Unauthenticated")
    }))
})
