/**
 * Operator certificates on the operator endpoint: a certificate of tenant T sees and changes T and nothing
 * else (cluster-wide procedures and other tenants' groups are `OutOfScope`, other tenants' instances are
 * unknown to it), while the admin token keeps the whole shard. Agents' certificates, other CAs' and expired
 * ones are refused like a wrong token, and counted. `nstance-admin cert issue` makes one from the bucket's
 * PKI that `nstance-admin` then uses against a running endpoint.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto"
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { type Duration, Effect, Fiber, HashMap, Layer, Logger, LogLevel, Option, Redacted, Stream } from "effect"
import { type AdminCredentials, callAdmin } from "../../src/admin/AdminClient.js"
import { runCommand } from "../support/cli.js"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { CONFIG_KEY, pkiObjectKeys } from "../../src/domain/bucketKeys.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"
import { makeFileStore } from "../../src/layers/ObjectStoreFile.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { makePrometheusScrape } from "../../src/metrics/prometheus.js"
import type { AdminRpcClient } from "../../src/admin/AdminClient.js"
import type { WatchEvent } from "../../src/rpc/AdminRpc.js"
import type { ClusterPkiShape } from "../../src/services/ClusterPki.js"
import { refused } from "../support/refused.js"
import { CLUSTER, makeAdminWorld, serve, SHARD, TOKEN } from "./harness.js"

const lines = (text: string) => text.split("\n").filter((line) => line !== "")

/** A fresh Ed25519 key pair, PEM. */
const keyPair = () => {
  const pair = generateKeyPairSync("ed25519")
  return {
    publicKeyPem: pair.publicKey.export({ type: "spki", format: "pem" }).toString(),
    privateKeyPem: pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString()
  }
}

/** Credentials presenting an operator certificate of `tenant` from `pki` (the server trusts `caPem`). */
const operatorCredentials = (pki: ClusterPkiShape, caPem: string, tenant: string, ttl: Duration.DurationInput = "1 hour") =>
  Effect.gen(function* () {
    const keys = keyPair()
    const issued = yield* pki.issueOperatorCertificate({ name: "alice", tenant, publicKeyPem: keys.publicKeyPem, ttl }).pipe(Effect.orDie)
    return { certificate: { certificatePem: issued.certificatePem, privateKeyPem: Redacted.make(keys.privateKeyPem) }, caPem } satisfies AdminCredentials
  })

/** `nstance_endpoint_refusals_total{endpoint="operator", reason}` as /metrics shows it now. */
const operatorRefusals = (reason: string) =>
  Effect.map(Effect.flatMap(makePrometheusScrape, (scrape) => scrape.text), (text) => {
    const line = text.split("\n").find((l) =>
      l.startsWith("nstance_endpoint_refusals_total{") && l.includes(`endpoint="operator"`) && l.includes(`reason="${reason}"`))
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
  })

/** A scratch directory removed with the scope. */
const scratch = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "nstance-opcert-"))),
  (directory) => Effect.promise(() => rm(directory, { recursive: true, force: true }))
)

/** A world with tenant shop's static group shop/web (1 VM) and tenant acct's dynamic group acct/api (1 VM), both running. */
const twoTenants = Effect.gen(function* () {
  const world = yield* makeAdminWorld({ size: 1, registration: true })
  const admin = yield* world.client()
  yield* admin.UpsertGroup({ tenant: "acct", group: "api", template: "api", size: 1 })
  yield* world.waitUntil("both tenants' VMs run", Effect.map(admin.ListInstances({}), (list) =>
    list.filter((i) => i.phase === "running").length === 2))
  return { world, admin }
})

describe("operator certificates scoped to a tenant", () => {
  it.scopedLive("a tenant's certificate sees and changes only its tenant; the token keeps the whole shard", () =>
    Effect.gen(function* () {
      const { world, admin } = yield* twoTenants
      const shop = yield* operatorCredentials(world.pki, world.pki.caPem, "shop")
      const call = <A, E>(f: (rpc: AdminRpcClient) => Effect.Effect<A, E>) => Effect.map(callAdmin(world.leader.address, shop, f), (r) => r.value)
      const all = yield* admin.ListInstances({})
      const ours = all.filter((i) => i.tenant === "shop")
      const theirs = all.filter((i) => i.tenant === "acct")
      expect([ours.length, theirs.length]).toEqual([1, 1])

      // Reads: its tenant only.
      expect((yield* call((rpc) => rpc.ListInstances({}))).map((i) => i.id)).toEqual(ours.map((i) => i.id))
      expect((yield* call((rpc) => rpc.ListGroups())).map((g) => `${g.tenant}/${g.group}`)).toEqual(["shop/web"])
      expect((yield* admin.ListGroups()).map((g) => `${g.tenant}/${g.group}`)).toEqual(["acct/api", "shop/web"])
      const status = yield* call((rpc) => rpc.Status())
      expect(status).toMatchObject({ cluster: CLUSTER, shard: SHARD, leader: "replica-1", term: 1, instances: 1, byPhase: { running: 1 }, groups: 1, desiredVms: 1 })
      expect(status.logId).toBeUndefined()
      expect(yield* admin.Status()).toMatchObject({ instances: 2, groups: 2, desiredVms: 2 })
      expect((yield* call((rpc) => rpc.GetInstance({ instanceId: ours[0]!.id }))).tenant).toBe("shop")
      expect(yield* refused(call((rpc) => rpc.GetInstance({ instanceId: theirs[0]!.id })))).toMatchObject({ _tag: "InstanceNotFound" })
      expect(yield* refused(call((rpc) => rpc.ListInstances({ tenant: "acct" })))).toMatchObject({
        _tag: "OutOfScope", tenant: "shop", operation: "ListInstances", otherTenant: "acct"
      })

      // Changes: its own groups and instances; another tenant's are refused and stay as they were.
      const resized = yield* call((rpc) => rpc.UpsertGroup({ tenant: "shop", group: "web", size: 2 }))
      expect(resized.group).toMatchObject({ tenant: "shop", group: "web", size: 2 })
      for (const [operation, attempt] of [
        ["UpsertGroup", refused(call((rpc) => rpc.UpsertGroup({ tenant: "acct", group: "api", size: 0 })))],
        ["DeleteGroup", refused(call((rpc) => rpc.DeleteGroup({ tenant: "acct", group: "api" })))],
        ["CreateInstance", refused(call((rpc) => rpc.CreateInstance({ tenant: "acct", group: "api" })))]
      ] as const) {
        const error = yield* attempt
        expect(error).toMatchObject({ _tag: "OutOfScope", tenant: "shop", operation, otherTenant: "acct" })
        expect(error.message).toBe(`${operation} on tenant acct: an operator certificate of tenant shop acts on its own tenant only`)
      }
      expect(yield* refused(call((rpc) => rpc.DeleteInstance({ instanceId: theirs[0]!.id })))).toMatchObject({ _tag: "InstanceNotFound" })
      expect(yield* refused(call((rpc) => rpc.MintNonce({ instanceId: theirs[0]!.id })))).toMatchObject({ _tag: "InstanceNotFound" })
      expect((yield* call((rpc) => rpc.MintNonce({ instanceId: ours[0]!.id }))).instanceId).toBe(ours[0]!.id)
      const acct = (yield* admin.ListGroups()).find((g) => g.tenant === "acct")
      expect(acct).toMatchObject({ size: 1 })
      expect((yield* admin.GetInstance({ instanceId: theirs[0]!.id })).phase).toBe("running")

      // Cluster-wide procedures: refused, naming the tenant and the operation; the token may.
      for (const [operation, attempt] of [
        ["RefreshConfig", refused(call((rpc) => rpc.RefreshConfig()))],
        ["ValidateConfig", refused(call((rpc) => rpc.ValidateConfig()))],
        ["AdoptVms", refused(call((rpc) => rpc.AdoptVms({ fromLog: `log${"0".repeat(26)}` })))]
      ] as const) {
        const error = yield* attempt
        expect(error).toMatchObject({ _tag: "OutOfScope", tenant: "shop", operation, otherTenant: null })
        expect(error.message).toBe(`${operation} is cluster-wide: an operator certificate of tenant shop may not do it (only the admin token may)`)
      }
      expect(yield* admin.ValidateConfig()).toMatchObject({ valid: true })

      // The watch: its tenant's changes only, while the token's watch sees both.
      const seen: Array<WatchEvent> = []
      const everything: Array<WatchEvent> = []
      const watching = yield* Effect.fork(callAdmin(world.leader.address, shop, (rpc) =>
        Stream.runForEach(rpc.WatchEvents(), (event) => Effect.sync(() => { seen.push(event) }))))
      const watchingAll = yield* Effect.fork(Stream.runForEach(admin.WatchEvents(), (event) => Effect.sync(() => { everything.push(event) })))
      yield* Effect.sleep("300 millis")
      const mine = yield* admin.CreateInstance({ tenant: "shop", group: "web" })
      const other = yield* admin.CreateInstance({ tenant: "acct", group: "api" })
      yield* world.waitUntil("the token's watch saw both requests", Effect.sync(() =>
        [mine.instanceId, other.instanceId].every((id) => everything.some((e) => e.instanceId === id))))
      yield* world.waitUntil("the tenant's watch saw its request", Effect.sync(() => seen.some((e) => e.instanceId === mine.instanceId)))
      yield* Effect.sleep("200 millis")
      expect(seen.length).toBeGreaterThan(0)
      expect(seen.every((e) => e.tenant === "shop")).toBe(true)
      expect(seen.some((e) => e.instanceId === other.instanceId)).toBe(false)
      yield* Fiber.interrupt(watching)
      yield* Fiber.interrupt(watchingAll)
    }), { timeout: 30_000 })

  it.scopedLive("a change is logged with who made it: the certificate's name, tenant and serial, or the admin token", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 1, registration: true })
      const lines: Array<{ readonly message: string; readonly operator: unknown }> = []
      const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ annotations, message }) => {
        lines.push({ message: Array.isArray(message) ? message.map(String).join(" ") : String(message), operator: Option.getOrUndefined(HashMap.get(annotations, "operator")) })
      }))
      const audited = yield* serve(world.replica, world.store, world.source, world.pki, undefined, Layer.merge(capture, Logger.minimumLogLevel(LogLevel.Info)))
      const shop = yield* operatorCredentials(world.pki, world.pki.caPem, "shop")
      const serial = (yield* world.pki.verifyClientCertificate(shop.certificate.certificatePem)).serial
      yield* callAdmin(audited.address, shop, (rpc) => rpc.UpsertGroup({ tenant: "shop", group: "web", size: 2 }))
      yield* callAdmin(audited.address, world.credentials, (rpc) => rpc.UpsertGroup({ tenant: "shop", group: "web", size: 1 }))
      const upserts = lines.filter((line) => line.message.startsWith("admin: group shop/web upserted"))
      expect(upserts.map((line) => line.operator)).toEqual([`alice (tenant shop, certificate ${serial})`, "admin token"])
    }))

  it.scopedLive("an agent's certificate, another CA's, an expired one and no credentials are refused and counted; the token still works", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0 })
      const caPem = world.pki.caPem
      const status = (credentials: AdminCredentials) => refused(callAdmin(world.leader.address, credentials, (rpc) => rpc.Status()))
      const certificatesBefore = yield* operatorRefusals("certificate")
      const tokensBefore = yield* operatorRefusals("token")

      const agentKeys = keyPair()
      const agent = yield* world.pki.issueClientCertificate({ instanceId: "web06h2tj1g45s2n1ps3j89r833pg", tenant: "shop", publicKeyPem: agentKeys.publicKeyPem, ttl: "1 hour" })
      const asAgent: AdminCredentials = { certificate: { certificatePem: agent.certificatePem, privateKeyPem: Redacted.make(agentKeys.privateKeyPem) }, caPem }
      const foreign = yield* makeClusterPki(makeMemoryStore(), { clusterId: "elsewhere", encryptionKey: new Uint8Array(randomBytes(32)) }).pipe(
        Effect.orDie,
        Logger.withMinimumLogLevel(LogLevel.None)
      )
      const otherCa = yield* operatorCredentials(foreign, caPem, "shop")
      const expired = yield* operatorCredentials(world.pki, caPem, "shop", "1 millis")
      yield* Effect.sleep("20 millis")

      for (const credentials of [asAgent, otherCa, expired, { caPem }]) {
        expect(yield* status(credentials)).toMatchObject({ _tag: "Unauthenticated" })
      }
      // The same connection setup with a valid operator certificate is served, and so is the token.
      const valid = yield* operatorCredentials(world.pki, caPem, "shop")
      expect((yield* callAdmin(world.leader.address, valid, (rpc) => rpc.Status())).value).toMatchObject({ leader: "replica-1", instances: 0 })
      expect((yield* callAdmin(world.leader.address, world.credentials, (rpc) => rpc.Status())).value).toMatchObject({ leader: "replica-1" })

      // The handlers learn the caller through a one-request key the guard puts into the request's headers; one
      // forged into the RPC message (where clients may add headers) only spoils the forger's own call.
      const rpc = yield* world.client()
      expect(yield* refused(rpc.Status(undefined, { headers: { "x-nstance-caller": "forged" } }))).toMatchObject({ _tag: "Unauthenticated" })
      expect(yield* rpc.Status()).toMatchObject({ leader: "replica-1" })

      expect((yield* operatorRefusals("certificate")) - certificatesBefore).toBe(3)
      expect((yield* operatorRefusals("token")) - tokensBefore).toBe(1)
    }), { timeout: 20_000 })

  it.effect("the PKI issues operator certificates only for well-formed names and tenants, and marks their role", () =>
    Effect.gen(function* () {
      const pki = yield* makeClusterPki(makeMemoryStore(), { clusterId: CLUSTER, encryptionKey: new Uint8Array(randomBytes(32)) }).pipe(
        Effect.orDie,
        Logger.withMinimumLogLevel(LogLevel.None)
      )
      const keys = keyPair()
      const issued = yield* pki.issueOperatorCertificate({ name: "ci-deploy@shop", tenant: "shop", publicKeyPem: keys.publicKeyPem, ttl: "1 hour" })
      expect(yield* pki.verifyClientCertificate(issued.certificatePem)).toMatchObject({ instanceId: "ci-deploy@shop", tenant: "shop", role: "operator" })
      const agent = yield* pki.issueClientCertificate({ instanceId: "web06h2tj1g45s2n1ps3j89r833pg", tenant: "shop", publicKeyPem: keys.publicKeyPem, ttl: "1 hour" })
      expect((yield* pki.verifyClientCertificate(agent.certificatePem)).role).toBe("agent")
      for (const [request, field] of [
        [{ name: "", tenant: "shop" }, "name"],
        [{ name: "bob/../x", tenant: "shop" }, "name"],
        [{ name: "x".repeat(65), tenant: "shop" }, "name"],
        [{ name: "bob", tenant: "Shop" }, "tenant"],
        [{ name: "bob", tenant: "s".repeat(33) }, "tenant"]
      ] as const) {
        const error = yield* refused(pki.issueOperatorCertificate({ ...request, publicKeyPem: keys.publicKeyPem, ttl: "1 hour" }))
        expect(error).toMatchObject({ _tag: "InvalidCertificateRequest", field })
      }
    }))
})

describe("nstance-admin cert issue and --cert-file", () => {
  it.scopedLive("issues a certificate from the bucket's PKI that nstance-admin then uses, scoped to its tenant", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 1 })
      const rpc = yield* world.client()
      yield* world.waitUntil("the VM runs", Effect.map(rpc.ListInstances({}), (list) => list.some((i) => i.phase === "running")))
      // A file bucket holding what the world's memory bucket holds: the PKI at the root, the config under the shard.
      const bucket = yield* scratch
      const files = makeFileStore({ directory: bucket })
      for (const key of Object.values(pkiObjectKeys(CLUSTER))) yield* files.put(key, (yield* world.store.get(key)).body)
      yield* files.put(`shard/${SHARD}/${CONFIG_KEY}`, (yield* world.store.get(CONFIG_KEY)).body)
      const out = join(yield* scratch, "alice")
      const issue = ["cert", "issue", "--storage", "file", "--bucket", bucket, "--shard", SHARD, "--tenant", "shop", "--name", "alice", "--out", out]
      const withKey = { NSTANCE_ENCRYPTION_KEY: Buffer.from(world.encryptionKey).toString("hex") }

      const noKey = yield* world.admin(issue, { NSTANCE_ENCRYPTION_KEY: undefined })
      expect(noKey.status).toBe(1)
      expect(lines(noKey.stderr)).toEqual([
        "✗ cert issue needs the servers' encryption key: invalid encryption key from NSTANCE_ENCRYPTION_KEY: not set (and no key file given); the cluster PKI's private keys are encrypted with it"
      ])
      const wrongKey = yield* world.admin(issue, { NSTANCE_ENCRYPTION_KEY: randomBytes(32).toString("hex") })
      expect(lines(wrongKey.stderr)).toEqual([expect.stringMatching(/^✗ cannot decrypt pki\/acme\/ca\.key: NSTANCE_ENCRYPTION_KEY/)])
      const badTenant = yield* world.admin([...issue.slice(0, -6), "--tenant", "Shop", "--name", "alice", "--out", out], withKey)
      expect(lines(badTenant.stderr)).toEqual([expect.stringMatching(/^✗ --tenant "Shop" must contain only lowercase/)])
      const empty = yield* scratch
      const elsewhere = ["cert", "issue", "--storage", "file", "--bucket", empty, "--shard", SHARD, "--tenant", "shop", "--name", "alice", "--out", out]
      const noConfig = yield* world.admin(elsewhere, withKey)
      expect(lines(noConfig.stderr)).toEqual([expect.stringMatching(/^✗ cannot tell the cluster from shard pve-a's config \(file:\/\/.*\/shard\/pve-a\/config\.jsonc\): .*no shard config/)])
      // A bucket with the config but no PKI: refused, and no CA is created there.
      yield* makeFileStore({ directory: empty }).put(`shard/${SHARD}/${CONFIG_KEY}`, (yield* world.store.get(CONFIG_KEY)).body)
      const noPki = yield* world.admin(elsewhere, withKey)
      expect(lines(noPki.stderr)).toEqual([expect.stringMatching(/^✗ no cluster PKI for cluster acme in this bucket \(pki\/acme\/\)/)])
      expect(yield* refused(makeFileStore({ directory: empty }).get(pkiObjectKeys(CLUSTER).caCert))).toMatchObject({ _tag: "NotFound" })

      const issued = yield* world.admin(issue, withKey)
      expect(issued.status).toBe(0)
      expect(lines(issued.stdout)[0]).toMatch(/^issued an operator certificate of tenant shop to alice \(cluster acme, serial [0-9a-f]+, valid until \S+Z\)$/)
      expect(issued.stdout).toContain(`export NSTANCE_CERT_FILE=${join(out, "alice.crt")} NSTANCE_KEY_FILE=${join(out, "alice.key")} NSTANCE_CA_FILE=${join(out, "ca.crt")}`)
      const keyMode = (yield* Effect.promise(() => stat(join(out, "alice.key")))).mode & 0o777
      expect(keyMode).toBe(0o600)
      expect(yield* Effect.promise(() => readFile(join(out, "ca.crt"), "utf8"))).toBe(world.pki.caPem)
      // No secret in what it printed.
      const keyText = yield* Effect.promise(() => readFile(join(out, "alice.key"), "utf8"))
      expect(issued.stdout + issued.stderr).not.toContain(keyText.split("\n")[1] ?? "-")
      // Valid for the default 90 days.
      const verified = yield* world.pki.verifyClientCertificate(yield* Effect.promise(() => readFile(join(out, "alice.crt"), "utf8")))
      expect(verified).toMatchObject({ instanceId: "alice", tenant: "shop", role: "operator" })
      expect(Math.round((verified.notAfter.getTime() - Date.now()) / 86_400_000)).toBe(90)

      // Existing files are kept unless --force.
      const again = yield* world.admin(issue, withKey)
      expect(lines(again.stderr)).toEqual([`✗ ${join(out, "alice.key")} exists; nothing issued (choose another --out or --name, or replace it with --force)`])
      expect(yield* Effect.promise(() => readFile(join(out, "alice.key"), "utf8"))).toBe(keyText)
      const forced = yield* world.admin([...issue, "--force", "--ttl", "7d"], withKey)
      expect(forced.status).toBe(0)
      expect(yield* Effect.promise(() => readFile(join(out, "alice.key"), "utf8"))).not.toBe(keyText)
      expect((yield* Effect.promise(() => stat(join(out, "alice.key")))).mode & 0o777).toBe(0o600)

      // nstance-admin with the certificate instead of the token: its tenant's view, cluster-wide commands refused.
      const server = ["--server", world.leader.address]
      const asAlice = { NSTANCE_ADMIN_TOKEN: undefined, NSTANCE_CERT_FILE: join(out, "alice.crt"), NSTANCE_KEY_FILE: join(out, "alice.key"), NSTANCE_CA_FILE: join(out, "ca.crt") }
      const instances = yield* world.admin(["instances", "--json", ...server], asAlice)
      expect(instances.status).toBe(0)
      expect(JSON.parse(instances.stdout)).toEqual([expect.objectContaining({ tenant: "shop", group: "web", phase: "running" })])
      const viaFlags = yield* world.admin(["groups", "--json", ...server, "--cert-file", join(out, "alice.crt"), "--key-file", join(out, "alice.key")], { NSTANCE_ADMIN_TOKEN: undefined })
      expect(JSON.parse(viaFlags.stdout)).toEqual([expect.objectContaining({ tenant: "shop", group: "web" })])
      const refresh = yield* world.admin(["refresh", ...server], asAlice)
      expect(refresh.status).toBe(1)
      expect(lines(refresh.stderr)).toEqual(["✗ RefreshConfig is cluster-wide: an operator certificate of tenant shop may not do it (only the admin token may)"])
      const otherTenant = yield* world.admin(["group", "set", "acct/api", "--template", "api", "--size", "1", ...server], asAlice)
      expect(lines(otherTenant.stderr)).toEqual(["✗ UpsertGroup on tenant acct: an operator certificate of tenant shop acts on its own tenant only"])

      // One credential at a time, and files that belong together.
      const both = yield* world.admin(["status", ...server], { ...asAlice, NSTANCE_ADMIN_TOKEN: Redacted.value(TOKEN) })
      expect(lines(both.stderr)).toEqual([expect.stringMatching(/^✗ give one credential: the admin token .* not both$/)])
      const halfKey = yield* world.admin(["status", ...server], { ...asAlice, NSTANCE_KEY_FILE: undefined })
      expect(lines(halfKey.stderr)).toEqual(["✗ NSTANCE_CERT_FILE is given without --key-file (or NSTANCE_KEY_FILE): an operator certificate needs both"])
      const strayKey = join(out, "stray.key")
      yield* Effect.promise(() => writeFile(strayKey, keyPair().privateKeyPem, { mode: 0o600 }))
      const mismatch = yield* world.admin(["status", ...server], { ...asAlice, NSTANCE_KEY_FILE: strayKey })
      expect(lines(mismatch.stderr)).toEqual([`✗ NSTANCE_KEY_FILE ${strayKey} is not the private key of NSTANCE_CERT_FILE ${join(out, "alice.crt")}`])
    }), { timeout: 30_000 })

  it("cert issue and the credential flags have --help", async () => {
    const issue = await runCommand(adminCommand, "nstance-admin", ["cert", "issue", "--help"])
    expect(issue.status).toBe(0)
    for (const flag of ["--tenant", "--name", "--ttl", "--out", "--force", "--encryption-key-file", "--storage", "--bucket", "--shard"]) expect(issue.stdout).toContain(flag)
    const status = await runCommand(adminCommand, "nstance-admin", ["status", "--help"])
    for (const flag of ["--cert-file", "--key-file", "--admin-token-file", "--ca-file"]) expect(status.stdout).toContain(flag)
  })
})
