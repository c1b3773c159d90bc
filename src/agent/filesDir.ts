/**
 * The agent's side of the file stream: the VM's files written into `--files-dir`, each one atomically (a
 * temporary file beside it, written with the configured mode, flushed, then renamed over the old one), so a
 * program reading `web.crt` sees the old or the new certificate, never half of one; and after each commit,
 * the files the agent wrote earlier that the config no longer names removed. What it wrote is remembered in
 * `.nstance-files.json` in that directory, so it never removes a file it did not write. Keys the server asks
 * for (certificate files) are made here, kept as `<name>.key` (0600) in the same directory for the programs
 * that use the certificate, and only their public half with a proof of possession ever leaves the VM.
 */
import { createHash, createPublicKey, generateKeyPairSync } from "node:crypto"
import { constants } from "node:fs"
import { mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises"
import { dirname, join } from "node:path"
import { Data, Effect, Either, Redacted, Schema } from "effect"
import type { FileMessage } from "../domain/agent/fileMessages.js"
import { fileNameProblem } from "../domain/config/files.js"

/** A file the agent could not write or a message it will not apply; names the file, never its content. */
export class FilesDirError extends Data.TaggedError("FilesDirError")<{ readonly file: string; readonly reason: string }> {
  override get message() {
    return `files directory: ${this.file}: ${this.reason}`
  }
}

export const MANIFEST = ".nstance-files.json"
const Manifest = Schema.parseJson(Schema.Struct({ files: Schema.Array(Schema.String) }))

const errorText = (error: unknown) => (typeof error === "object" && error !== null && "code" in error ? String(error.code) : String(error))

/** Writes `content` to `path` atomically with `mode` (created 0700-free: the mode is set before the rename). */
export const writeAtomically = (path: string, content: Uint8Array, mode: number): Effect.Effect<void, FilesDirError> =>
  Effect.tryPromise({
    try: async () => {
      await mkdir(dirname(path), { recursive: true, mode: 0o755 })
      const temporary = `${dirname(path)}/.${path.slice(dirname(path).length + 1)}.${process.pid}.${Date.now()}.tmp`
      const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode)
      try {
        await handle.writeFile(content)
        // The umask may have narrowed the mode at creation: the configured one is what the file gets.
        await handle.chmod(mode)
        await handle.sync()
      } finally {
        await handle.close()
      }
      try {
        await rename(temporary, path)
      } catch (error) {
        await unlink(temporary).catch(() => undefined)
        throw error
      }
    },
    catch: (error) => new FilesDirError({ file: path, reason: `cannot write (${errorText(error)})` })
  })

const readManifest = (dir: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(() => readFile(join(dir, MANIFEST), "utf8").catch(() => "")).pipe(
    Effect.map((text) => Either.getOrElse(Schema.decodeUnknownEither(Manifest)(text), () => ({ files: [] })).files)
  )

const writeManifest = (dir: string, files: ReadonlyArray<string>) =>
  writeAtomically(join(dir, MANIFEST), new TextEncoder().encode(JSON.stringify({ files: [...files].sort() }, null, 2) + "\n"), 0o600)

/** The private key `name` the agent holds for certificate files: read from the files directory, or made there. */
export const agentKey = (dir: string, name: string): Effect.Effect<Redacted.Redacted<string>, FilesDirError> =>
  Effect.gen(function* () {
    const path = join(dir, `${name}.key`)
    const existing = yield* Effect.promise(() => readFile(path, "utf8").catch(() => undefined))
    if (existing !== undefined) {
      // A key that no longer parses is replaced: the server certifies whatever key is submitted next.
      const ok = Either.isRight(Either.try(() => createPublicKey(existing)))
      if (ok) return Redacted.make(existing)
    }
    const pem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }) as string
    yield* writeAtomically(path, new TextEncoder().encode(pem), 0o600)
    return Redacted.make(pem)
  })

/**
 * Applies the file stream's messages to `dir`: files written as they come, dropped ones removed at each
 * commit; `submitKey` is called for every key the server asks for. `onCommit` hears each commit's names.
 */
export const makeFilesDir = (
  dir: string,
  submitKey: (name: string, privateKeyPem: Redacted.Redacted<string>) => Effect.Effect<void, { readonly message: string }>,
  onCommit: (names: ReadonlyArray<string>) => Effect.Effect<void> = () => Effect.void
) =>
  Effect.gen(function* () {
    yield* Effect.tryPromise({
      try: () => mkdir(dir, { recursive: true, mode: 0o755 }),
      catch: (error) => new FilesDirError({ file: dir, reason: `cannot create the directory (${errorText(error)})` })
    })
    /** Every file the agent wrote and has not removed: a commit removes those it does not name. */
    let written = new Set(yield* readManifest(dir))
    const apply = (message: FileMessage): Effect.Effect<void, FilesDirError> =>
      Effect.gen(function* () {
        switch (message._tag) {
          case "KeysWanted":
            for (const name of message.names) {
              if (fileNameProblem(name) !== undefined || name.includes("/")) {
                yield* Effect.logWarning(`files directory: the server asked for a key named ${JSON.stringify(name)}; refused`)
                continue
              }
              const key = yield* agentKey(dir, name)
              yield* submitKey(name, key).pipe(
                Effect.catchAll((error) => Effect.logWarning(`files directory: submitting key ${name} failed: ${error.message}; asked again on the next stream`))
              )
            }
            return
          case "File": {
            const problem = fileNameProblem(message.name)
            if (problem !== undefined || message.name === MANIFEST) return yield* new FilesDirError({ file: message.name, reason: `not a file name the agent writes (${problem ?? "reserved"})` })
            if (!Number.isInteger(message.mode) || message.mode < 0 || message.mode > 0o777) return yield* new FilesDirError({ file: message.name, reason: "mode is not permission bits" })
            const content = new Uint8Array(Buffer.from(message.contentBase64, "base64"))
            if (createHash("sha256").update(content).digest("hex") !== message.digest) {
              return yield* new FilesDirError({ file: message.name, reason: "content does not match its digest; not written" })
            }
            // A reopened stream sends every file again: one already as sent is left alone (no needless rename).
            const path = join(dir, message.name)
            const same = yield* Effect.promise(async () => {
              const [held, stats] = await Promise.all([readFile(path).catch(() => undefined), stat(path).catch(() => undefined)])
              return held !== undefined && stats !== undefined && (stats.mode & 0o777) === message.mode &&
                createHash("sha256").update(held).digest("hex") === message.digest
            })
            if (same && written.has(message.name)) return
            yield* writeAtomically(path, content, message.mode)
            written.add(message.name)
            yield* writeManifest(dir, [...written])
            yield* Effect.logInfo(`files directory: wrote ${message.name} (${content.length} bytes, mode ${message.mode.toString(8).padStart(4, "0")})`)
            return
          }
          case "Commit": {
            const keep = new Set(message.names)
            for (const name of [...written]) {
              if (keep.has(name)) continue
              yield* Effect.tryPromise({
                try: () => unlink(join(dir, name)).catch((error: NodeJS.ErrnoException) => (error.code === "ENOENT" ? undefined : Promise.reject(error))),
                catch: (error) => new FilesDirError({ file: name, reason: `cannot remove (${errorText(error)})` })
              })
              yield* Effect.logInfo(`files directory: removed ${name} (no longer in the config)`)
            }
            written = new Set([...written].filter((name) => keep.has(name)))
            yield* writeManifest(dir, [...written])
            yield* onCommit(message.names)
            return
          }
        }
      })
    return { apply, written: () => [...written].sort() }
  })
