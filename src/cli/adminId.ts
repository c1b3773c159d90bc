/** `nstance-admin id new|parse`: mint or inspect instance IDs without a running server. */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect } from "effect"
import { InvalidInstanceId, parseInstanceId, storageKeyOf, uuidOf } from "../domain/instanceId.js"
import { InstanceIds, InstanceIdsLive } from "../services/InstanceIds.js"
import { UsageError } from "../inputFile.js"

const kind = Options.text("kind").pipe(Options.withDescription("3-letter instance kind (the template's kind), e.g. web"))

const newId = Command.make("new", { kind }, ({ kind }) =>
  InstanceIds.pipe(
    Effect.flatMap((ids) => ids.next(kind)),
    Effect.mapError((error) => new UsageError({ message: error.message })),
    Effect.flatMap(Console.log),
    Effect.provide(InstanceIdsLive)
  )
).pipe(Command.withDescription("Print a fresh instance ID (kind + UUIDv7 in base32)"))

const parse = Command.make("parse", { id: Args.text({ name: "ID" }) }, ({ id }) => {
  const parsed = parseInstanceId(id)
  if (parsed instanceof InvalidInstanceId) return Effect.fail(new UsageError({ message: parsed.message }))
  return Console.log(JSON.stringify({
    id: parsed.id,
    kind: parsed.kind,
    uuid: uuidOf(parsed),
    storageKey: storageKeyOf(parsed),
    createdAt: new Date(parsed.createdAtMillis).toISOString()
  }, null, 2))
}).pipe(Command.withDescription("Check an instance ID and print its UUID, storage key and creation time"))

export const idCommand = Command.make("id").pipe(
  Command.withDescription("Mint or inspect instance IDs"),
  Command.withSubcommands([newId, parse])
)
