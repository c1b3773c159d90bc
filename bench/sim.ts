/**
 * How fast the PVE simulator itself answers, so a client bench knows the simulator is not its bottleneck:
 * raw calls/s (HTTP and HTTPS, 1 and 16 concurrent callers, zero injected latency) and creates/min for a
 * minimal create sequence (nextid, clone, upload ISO, config, start, each task waited) at the fast preset.
 */
import { Agent, FormData, fetch } from "undici"
import { cloudInitSeed } from "../src/domain/cloudInit.js"
import { seedIsoBytes } from "../src/layers/IsoBuilder9660.js"
import { LatencyFast } from "../src/sim/latency.js"
import { startSimulator, type RunningSimulator } from "../src/sim/server.js"

const agent = new Agent({ connect: { rejectUnauthorized: false }, connections: 64 })

const caller = (sim: RunningSimulator) => {
  const auth = `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`
  const call = async (method: string, path: string, form?: Record<string, string | number>): Promise<unknown> => {
    const r = await fetch(sim.url + path, {
      method, dispatcher: agent,
      headers: form === undefined ? { Authorization: auth } : { Authorization: auth, "Content-Type": "application/x-www-form-urlencoded" },
      body: form === undefined ? undefined : new URLSearchParams(Object.entries(form).map(([k, v]): [string, string] => [k, String(v)])).toString()
    })
    const text = await r.text()
    if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${r.statusText}`)
    const parsed: unknown = JSON.parse(text)
    return typeof parsed === "object" && parsed !== null && "data" in parsed ? parsed.data : undefined
  }
  const wait = async (upid: unknown) => {
    if (typeof upid !== "string") throw new Error("no UPID")
    const node = upid.split(":")[1] ?? ""
    for (;;) {
      const st = await call("GET", `/nodes/${node}/tasks/${encodeURIComponent(upid)}/status`)
      if (typeof st === "object" && st !== null && "status" in st && st.status === "stopped") {
        if ("exitstatus" in st && st.exitstatus !== "OK") throw new Error(`task failed: ${String(st.exitstatus)}`)
        return
      }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
  const upload = async (node: string, name: string, data: Uint8Array) => {
    const form = new FormData()
    form.set("content", "iso")
    form.set("filename", new Blob([data]), name)
    const r = await fetch(`${sim.url}/nodes/${node}/storage/local/upload`, { method: "POST", dispatcher: agent, headers: { Authorization: auth }, body: form })
    const parsed: unknown = JSON.parse(await r.text())
    return typeof parsed === "object" && parsed !== null && "data" in parsed ? parsed.data : undefined
  }
  return { call, wait, upload }
}

const rawCalls = async (http: boolean, concurrency: number) => {
  const sim = await startSimulator({ http, latency: { ...LatencyFast, requestMs: [0, 0] } })
  try {
    const { call } = caller(sim)
    const total = 4000
    let next = 0
    for (let i = 0; i < 200; i++) await call("GET", "/cluster/resources?type=vm")
    const start = process.hrtime.bigint()
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next++ < total) await call("GET", "/cluster/resources?type=vm")
    }))
    const seconds = Number(process.hrtime.bigint() - start) / 1e9
    console.log(`${(http ? "HTTP " : "HTTPS")} GET /cluster/resources, ${String(concurrency).padStart(2)} callers: ${(total / seconds).toFixed(0).padStart(6)} calls/s`)
  } finally {
    await sim.close()
  }
}

const creates = async (count: number, concurrency: number) => {
  const sim = await startSimulator({ http: true, nodes: 3, latency: LatencyFast })
  try {
    const { call, wait, upload } = caller(sim)
    let made = 0
    let lockFailures = 0
    let vmidConflicts = 0
    const one = async (i: number) => {
      const node = `pve${(i % 3) + 1}`
      const template = 9000 + (i % 3)
      for (;;) {
        const id = Number(await call("GET", "/cluster/nextid"))
        let upid: unknown
        try {
          upid = await call("POST", `/nodes/${node}/qemu/${template}/clone`, { newid: id, name: `bench-${i}`, full: 1, storage: "local-lvm" })
        } catch (error) {
          if (error instanceof Error && error.message.includes("already exists")) continue
          throw error
        }
        try {
          await wait(upid)
        } catch (error) {
          // Real PVE behaviour: parallel full clones on one storage queue on its lock and can time out,
          // and clones racing for one nextid lose on the VMID's config lock or in pmxcfs.
          if (error instanceof Error && error.message.includes("pve-storage")) { lockFailures++; continue }
          if (error instanceof Error && /got timeout|File exists|already exists/.test(error.message)) { vmidConflicts++; continue }
          throw error
        }
        const seed = cloudInitSeed({ instanceId: `bench-${i}`, userData: "echo hi" })
        if (!("metaData" in seed)) throw seed
        const iso = seedIsoBytes(seed)
        if (!(iso instanceof Uint8Array)) throw iso
        await wait(await upload(node, `user-data-${id}.iso`, iso))
        await wait(await call("POST", `/nodes/${node}/qemu/${id}/config`, {
          cores: 2, memory: 2048, tags: "nstance;bench", ide2: `local:iso/user-data-${id}.iso,media=cdrom`, boot: "order=scsi0;ide2"
        }))
        await wait(await call("POST", `/nodes/${node}/qemu/${id}/status/start`))
        made++
        return
      }
    }
    const start = process.hrtime.bigint()
    let next = 0
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < count) await one(next++)
    }))
    const seconds = Number(process.hrtime.bigint() - start) / 1e9
    const counts = sim.model.requestCounts()
    const polls = counts.get("GET /nodes/{node}/tasks/{upid}/status") ?? 0
    const all = [...counts.values()].reduce((a, b) => a + b, 0)
    console.log(`minimal create (fast latency, full clone 2 GiB), ${concurrency} concurrent: ${made} creates in ${seconds.toFixed(2)} s = ${(made / seconds * 60).toFixed(0)} creates/min`)
    console.log(`  calls per create: ${((all - polls) / made).toFixed(2)} non-polling + ${(polls / made).toFixed(2)} task polls; booted ${sim.model.boots.filter((b) => b.outcome === "booted").length}/${made}; pveproxy queue peak ${sim.model.workers.peakQueue}; clones retried after a storage-lock timeout: ${lockFailures}, after losing a VMID race: ${vmidConflicts}`)
  } finally {
    await sim.close()
  }
}

await rawCalls(true, 1)
await rawCalls(true, 16)
await rawCalls(false, 1)
await rawCalls(false, 16)
await creates(60, 1)
await creates(60, 10)
await agent.close()
