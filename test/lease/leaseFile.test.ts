import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "@effect/vitest"
import { makeFileStore } from "../../src/layers/ObjectStoreFile.js"
import { backend } from "./harness.js"
import { suite } from "./leaseSuite.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-lease-vt-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let bucket = 0

suite(backend("file", () => makeFileStore({ directory: join(dir, `bucket-${++bucket}`) })), 60_000)
