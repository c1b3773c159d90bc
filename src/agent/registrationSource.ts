/**
 * Where `nstance-agent` finds its nonce and registration URL on the VM. The create saga puts them into the
 * instance's cloud-init user-data as a part that writes `/etc/nstance/agent.json`, so on a booted VM they
 * are, in the order an operator would reach for them: that file (written by cloud-init), the user-data
 * itself (a copy cloud-init keeps, or a file), the NoCloud seed (the attached CD-ROM — its device or ISO
 * image, as the simulator's guests read it — or a directory where it is mounted), or the environment.
 * The user-data and the seed are parsed by the same code as the simulator's guests
 * (`agentRegistrationOf` in the domain, `readSeed` in `src/domain/noCloudSeed.ts`).
 */
import { open, stat } from "node:fs/promises"
import { Effect } from "effect"
import { decodeUtf8, readInputFile } from "../inputFile.js"
import { type AgentRegistrationData, agentRegistrationOf, AGENT_CONFIG_PATH, parseAgentJson } from "../domain/shard/userData.js"
import { readSeed } from "../domain/noCloudSeed.js"
import { AgentError } from "./stateDir.js"

export type RegistrationSource =
  /** `agent.json` as cloud-init wrote it (default `/etc/nstance/agent.json`). */
  | { readonly _tag: "SettingsFile"; readonly path: string }
  /** A cloud-init user-data document (e.g. `/var/lib/cloud/instance/user-data.txt`). */
  | { readonly _tag: "UserData"; readonly path: string }
  /** The NoCloud seed: an ISO image or CD-ROM device (`/dev/sr0`), or a directory holding `user-data`. */
  | { readonly _tag: "Seed"; readonly path: string }
  /** `NSTANCE_AGENT_NONCE`, `NSTANCE_AGENT_CA_FILE` (the cluster CA) and `NSTANCE_AGENT_URL` unless `--url` is given. */
  | { readonly _tag: "Env"; readonly nonce: string; readonly url: string | undefined; readonly caFile: string | undefined }

export const DEFAULT_SETTINGS_FILE = AGENT_CONFIG_PATH
const MAX_TEXT_BYTES = 1024 * 1024
/** A NoCloud seed ISO is a few KiB; a CD-ROM device holding something else is refused after this much. */
const MAX_SEED_BYTES = 64 * 1024 * 1024

const refused = (message: string) => new AgentError({ message })

const readText = (flag: string, path: string, what: string) =>
  readInputFile({ flag, path, what, maxBytes: MAX_TEXT_BYTES }).pipe(
    Effect.flatMap((bytes) => decodeUtf8({ flag, path }, bytes)),
    Effect.mapError((error) => refused(error.message))
  )

const fromUserData = (where: string, userData: string) => {
  const found = agentRegistrationOf(userData)
  return found === undefined
    ? Effect.fail(refused(`${where}: the user-data has no nstance agent settings (${AGENT_CONFIG_PATH}); was the VM created with agent registration on?`))
    : Effect.succeed(found)
}

const seedUserData = (path: string) =>
  Effect.gen(function* () {
    const stats = yield* Effect.tryPromise({ try: () => stat(path), catch: (error) => refused(`--seed ${path}: ${error instanceof Error ? error.message : String(error)}`) })
    if (stats.isDirectory()) return yield* readText("--seed", `${path.replace(/\/+$/, "")}/user-data`, "a user-data file")
    if (!stats.isFile() && !stats.isBlockDevice()) return yield* refused(`--seed ${path}: not a directory, an ISO image or a block device`)
    const image = yield* Effect.tryPromise({
      try: async () => {
        const handle = await open(path, "r")
        try {
          const buffer = Buffer.alloc(MAX_SEED_BYTES)
          const { bytesRead } = await handle.read(buffer, 0, MAX_SEED_BYTES, 0)
          return new Uint8Array(buffer.subarray(0, bytesRead))
        } finally {
          await handle.close()
        }
      },
      catch: (error) => refused(`--seed ${path}: ${error instanceof Error ? error.message : String(error)}`)
    })
    const seed = readSeed(image)
    if (seed._tag === "Unreadable") return yield* refused(`--seed ${path}: ${seed.reason}`)
    return seed.userData
  })

/** The nonce and URL from `source`; a missing or unreadable source is an `AgentError` naming it. */
export const readRegistration = (source: RegistrationSource): Effect.Effect<AgentRegistrationData, AgentError> => {
  switch (source._tag) {
    case "Env": {
      const { caFile, nonce, url } = source
      if (url === undefined) return Effect.fail(refused("NSTANCE_AGENT_NONCE is set but no registration URL: set NSTANCE_AGENT_URL or --url"))
      if (caFile === undefined || caFile === "") {
        return Effect.fail(refused("NSTANCE_AGENT_NONCE is set but no CA: set NSTANCE_AGENT_CA_FILE to the cluster CA certificate (the agent sends its nonce only to a server it signed)"))
      }
      return readText("NSTANCE_AGENT_CA_FILE", caFile, "a CA certificate").pipe(
        Effect.flatMap((caPem) =>
          caPem.includes("-----BEGIN CERTIFICATE-----")
            ? Effect.succeed({ registrationUrl: url, nonce, caPem })
            : Effect.fail(refused(`NSTANCE_AGENT_CA_FILE ${caFile}: not a PEM certificate`)))
      )
    }
    case "SettingsFile":
      return readText("--settings", source.path, "an agent settings file").pipe(
        Effect.flatMap((text) => {
          const found = parseAgentJson(text)
          return found === undefined
            ? Effect.fail(refused(`--settings ${source.path}: expected a JSON object with string fields registration_url, nonce and ca_pem`))
            : Effect.succeed(found)
        })
      )
    case "UserData":
      return readText("--user-data", source.path, "a user-data file").pipe(Effect.flatMap((text) => fromUserData(`--user-data ${source.path}`, text)))
    case "Seed":
      return seedUserData(source.path).pipe(Effect.flatMap((text) => fromUserData(`--seed ${source.path}`, text)))
  }
}
