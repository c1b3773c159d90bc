import { createHash, createPrivateKey, createPublicKey } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { MANIFEST, makeFilesDir } from "../../src/agent/filesDir.js"
import type { FileMessage } from "../../src/domain/agent/fileMessages.js"

const file = (name: string, text: string, mode = 0o644): Extract<FileMessage, { readonly _tag: "File" }> => ({
  _tag: "File",
  name,
  mode,
  contentBase64: Buffer.from(text).toString("base64"),
  digest: createHash("sha256").update(text).digest("hex")
})

describe("nstance-agent's files directory", () => {
  const root = mkdtempSync(join(tmpdir(), "nstance-filesdir-"))
  afterAll(() => rmSync(root, { recursive: true, force: true }))

  it.live("writes files with their modes, removes at a commit only the files it wrote and the config dropped", () =>
    Effect.gen(function* () {
      const dir = join(root, "a")
      const files = yield* makeFilesDir(dir, () => Effect.void)
      writeFileSync(join(root, "a", "operator-notes.txt"), "mine, not the agent's")
      yield* files.apply(file("conf/app.env", "A=1\n", 0o640))
      yield* files.apply(file("db.pass", "secret", 0o600))
      yield* files.apply({ _tag: "Commit", names: ["conf/app.env", "db.pass"] })
      expect(readFileSync(join(dir, "conf/app.env"), "utf8")).toBe("A=1\n")
      expect(statSync(join(dir, "conf/app.env")).mode & 0o777).toBe(0o640)
      expect(statSync(join(dir, "db.pass")).mode & 0o777).toBe(0o600)
      yield* files.apply(file("db.pass", "rotated", 0o600))
      yield* files.apply({ _tag: "Commit", names: ["db.pass"] })
      expect(existsSync(join(dir, "conf/app.env"))).toBe(false)
      expect(readFileSync(join(dir, "db.pass"), "utf8")).toBe("rotated")
      expect(readFileSync(join(dir, "operator-notes.txt"), "utf8")).toBe("mine, not the agent's")
      // A restarted agent remembers what it wrote.
      const again = yield* makeFilesDir(dir, () => Effect.void)
      yield* again.apply({ _tag: "Commit", names: [] })
      expect(existsSync(join(dir, "db.pass"))).toBe(false)
      expect(existsSync(join(dir, "operator-notes.txt"))).toBe(true)
      expect(JSON.parse(readFileSync(join(dir, MANIFEST), "utf8"))).toEqual({ files: [] })
    }))

  it.live("refuses a name that leaves the directory and content that does not match its digest", () =>
    Effect.gen(function* () {
      const dir = join(root, "b")
      const files = yield* makeFilesDir(dir, () => Effect.void)
      const climb = yield* Effect.flip(files.apply(file("../escape", "x")))
      expect(climb.message).toContain("not a file name the agent writes")
      expect(existsSync(join(root, "escape"))).toBe(false)
      const altered = yield* Effect.flip(files.apply({ ...file("a.txt", "x"), contentBase64: Buffer.from("y").toString("base64") }))
      expect(altered.message).toBe("files directory: a.txt: content does not match its digest; not written")
      expect(existsSync(join(dir, "a.txt"))).toBe(false)
    }))

  it.live("makes a key once, keeps it (0600), submits the same one again, and refuses a key name that climbs", () =>
    Effect.gen(function* () {
      const dir = join(root, "c")
      const submitted: Array<string> = []
      const files = yield* makeFilesDir(dir, (name, key) => Effect.sync(() => void submitted.push(`${name}:${createPublicKey(createPrivateKey(Redacted.value(key))).export({ type: "spki", format: "pem" })}`)))
      yield* files.apply({ _tag: "KeysWanted", names: ["web"] })
      yield* files.apply({ _tag: "KeysWanted", names: ["web", "../etc"] })
      expect(statSync(join(dir, "web.key")).mode & 0o777).toBe(0o600)
      expect(submitted).toHaveLength(2)
      expect(submitted[0]).toBe(submitted[1])
      // What was submitted is the public half of the key kept on disk.
      expect(submitted[0]).toBe(`web:${createPublicKey(createPrivateKey(readFileSync(join(dir, "web.key")))).export({ type: "spki", format: "pem" })}`)
      expect(existsSync(join(root, "etc.key"))).toBe(false)
    }))
})
