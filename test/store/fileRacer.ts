/**
 * A child process of the file-store race test: says it is ready, waits for the go file (so that all
 * racers start together), attempts one conditional write, and prints `won <etag>` or `lost`.
 * Usage: fileRacer.ts DIR KEY absent|match BODY [ETAG]
 */
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { makeFileStore } from "../../src/layers/ObjectStoreFile.js"
import { ifAbsent, ifMatch } from "../../src/services/ObjectStore.js"

const [dir, key, mode, body, etag] = process.argv.slice(2)
if (dir === undefined || key === undefined || body === undefined || (mode !== "absent" && mode !== "match")) {
  console.error("usage: fileRacer.ts DIR KEY absent|match BODY [ETAG]")
  process.exit(2)
}
writeFileSync(join(dir, `ready-${process.pid}`), "")
const go = join(dir, "go")
const deadline = Date.now() + 60_000
while (!existsSync(go) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 2))

const store = makeFileStore({ directory: join(dir, "store") })
const result = await Effect.runPromise(
  Effect.either(store.put(key, new TextEncoder().encode(body), mode === "absent" ? ifAbsent : ifMatch(etag ?? "")))
)
if (result._tag === "Right") console.log(`won ${result.right.etag}`)
else if (result.left._tag === "PreconditionFailed") console.log("lost")
else console.log(`error ${result.left.message}`)
