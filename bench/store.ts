/**
 * Latency of the operations leader election lives on: a conditional PUT (IfMatch renewal of a lease-sized
 * body), a create-only PUT and a GET, on the memory store, the file store and — when AWS_ENDPOINT_URL and
 * S3_TEST_BUCKET point at one (`eval "$(bash scripts/s3-server.sh start)"`) — the real S3 server.
 */
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { makeFileStore } from "../src/layers/ObjectStoreFile.js"
import { makeMemoryStore } from "../src/layers/ObjectStoreMemory.js"
import { makeS3Store } from "../src/layers/ObjectStoreS3.js"
import { ifAbsent, ifMatch, type ObjectStoreShape } from "../src/services/ObjectStore.js"
import { percentile } from "./lib/stats.js"

process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"

const fmt = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`)

const time = async (iterations: number, run: (i: number) => Promise<unknown>) => {
  const samples: Array<number> = []
  for (let i = 0; i < iterations; i++) {
    const start = performance.now()
    await run(i)
    samples.push(performance.now() - start)
  }
  samples.sort((a, b) => a - b)
  return `p50 ${fmt(percentile(samples, 0.5))}  p99 ${fmt(percentile(samples, 0.99))}  (n=${iterations})`
}

const benchStore = async (label: string, store: ObjectStoreShape, iterations: number) => {
  const prefix = `bench-${randomUUID()}/`
  const lease = new TextEncoder().encode(JSON.stringify({ holder: "replica-1", expiresAt: Date.now(), term: 1, pad: "x".repeat(200) }))
  let { etag } = await Effect.runPromise(store.put(`${prefix}lease`, lease))
  const ifMatchLine = await time(iterations, async () => {
    etag = (await Effect.runPromise(store.put(`${prefix}lease`, lease, ifMatch(etag)))).etag
  })
  const ifAbsentLine = await time(iterations, (i) => Effect.runPromise(store.put(`${prefix}created/${i}`, lease, ifAbsent)))
  const getLine = await time(iterations, () => Effect.runPromise(store.get(`${prefix}lease`)))
  console.log(`${label}\n  put IfMatch   ${ifMatchLine}\n  put IfAbsent  ${ifAbsentLine}\n  get           ${getLine}`)
  await Effect.runPromise(store.delete(`${prefix}lease`))
  for (let i = 0; i < iterations; i++) await Effect.runPromise(store.delete(`${prefix}created/${i}`))
}

await benchStore("memory", makeMemoryStore(), 2000)

const dir = mkdtempSync(join(tmpdir(), "nstance-bench-store-"))
try {
  await benchStore(`file (${dir}, fsync on every write)`, makeFileStore({ directory: dir }), 300)
} finally {
  rmSync(dir, { recursive: true, force: true })
}

const { AWS_ENDPOINT_URL: endpoint, S3_TEST_BUCKET: bucket } = process.env
if (endpoint && bucket) {
  await benchStore(`s3 (${endpoint}, bucket ${bucket})`, makeS3Store({ bucket }), 300)
} else {
  console.log("s3: skipped (set AWS_ENDPOINT_URL, S3_TEST_BUCKET and AWS credentials, e.g. eval \"$(bash scripts/s3-server.sh start)\")")
}
