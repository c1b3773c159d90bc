/**
 * `nstance-admin iso`: writes the cloud-init seed ISO a VM with this instance ID would boot with, so an
 * operator can inspect it (isoinfo, xorriso, a test VM) before trusting the server with a group.
 */
import { Options, Command } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { Console, Effect, Option } from "effect"
import { cloudInitSeed, InvalidCloudInitInput } from "../domain/cloudInit.js"
import { InvalidInstanceId, parseInstanceId } from "../domain/instanceId.js"
import { CLOUD_INIT_VOLUME_ID, seedIsoBytes } from "../layers/IsoBuilder9660.js"
import { IsoBuildError } from "../services/IsoBuilder.js"
import { decodeUtf8, readInputFile, UsageError } from "../inputFile.js"

const instanceId = Options.text("instance-id").pipe(
  Options.withDescription("Instance ID the VM gets (29 characters: kind + UUIDv7 in base32); becomes meta-data instance-id")
)
const hostname = Options.text("hostname").pipe(
  Options.withDescription("local-hostname in meta-data, a DNS label (default: the instance ID, as the server does)"),
  Options.optional
)
const userData = Options.text("user-data").pipe(
  Options.withDescription("File with the group's user-data (a #cloud-config document or a script; anything else gets #!/bin/bash prepended)")
)
const networkConfig = Options.text("network-config").pipe(
  Options.withDescription("Optional file with a NoCloud network-config (v1 or v2 YAML), written as-is"),
  Options.optional
)
const output = Options.text("output").pipe(
  Options.withAlias("o"),
  Options.withDescription("Where to write the ISO image (overwritten if it exists)")
)

/** Cloud-init data is read by a booting VM from a small seed ISO; anything near this size is a mistake. */
const MAX_SEED_FILE_BYTES = 16 * 1024 * 1024

const readText = (flag: string, path: string) =>
  readInputFile({ flag: `--${flag}`, path, what: "a cloud-init file", maxBytes: MAX_SEED_FILE_BYTES }).pipe(
    Effect.flatMap((bytes) => decodeUtf8({ flag: `--${flag}`, path }, bytes))
  )

export const isoCommand = Command.make(
  "iso",
  { instanceId, hostname, userData, networkConfig, output },
  Effect.fn("admin.iso")(function* (args) {
    const fs = yield* FileSystem.FileSystem
    const id = parseInstanceId(args.instanceId)
    if (id instanceof InvalidInstanceId) return yield* new UsageError({ message: `--instance-id: ${id.message}` })
    const user = yield* readText("user-data", args.userData)
    const network = Option.isSome(args.networkConfig)
      ? yield* readText("network-config", args.networkConfig.value)
      : undefined
    const seed = cloudInitSeed({
      instanceId: id.id,
      hostname: Option.getOrElse(args.hostname, () => id.id),
      userData: user,
      ...(network === undefined ? {} : { networkConfig: network })
    })
    if (seed instanceof InvalidCloudInitInput) return yield* new UsageError({ message: seed.message })
    const image = seedIsoBytes(seed)
    if (image instanceof IsoBuildError) return yield* new UsageError({ message: image.message })
    yield* fs.writeFile(args.output, image).pipe(
      Effect.mapError((error) => new UsageError({ message: `cannot write -o ${args.output}: ${error.message}` }))
    )
    const files = ["user-data", "meta-data", ...(seed.networkConfig === undefined ? [] : ["network-config"])]
    yield* Console.log(`wrote ${args.output} (${image.length} bytes, volume ${CLOUD_INIT_VOLUME_ID}): ${files.join(", ")}`)
  })
).pipe(Command.withDescription("Write the cloud-init NoCloud ISO (volume cidata) a VM with this instance ID would get"))
