/**
 * The create saga's templates: the data one VM's user-data and args are rendered with (this shard's ids and
 * advertised addresses, the cluster CA, the merged vars, the nonce), and the user-data template text itself
 * — inline, or fetched from its URL at the ISO step. A URL that answers anything but 200, or not at all, is a
 * transient step failure (the saga waits and retries with backoff; nothing is compensated); content that
 * does not decode or render fails the create.
 */
import { Effect, Either } from "effect"
import type { Group, ShardConfig, Userdata } from "../domain/config/index.js"
import { decodeUserData, parseUserDataUrl, redactedUrl } from "../domain/config/userdata.js"
import { templateData, type TemplateInputs } from "../domain/shard/templateData.js"
import type { TemplateMap } from "../domain/goTemplate/index.js"
import { UserDataSource } from "../services/UserDataSource.js"
import { advertisedAddress, type ShardContextShape } from "./ShardContext.js"
import { permanentStepError, type StepName, waitingStepError } from "./stepError.js"

/** The template data of one VM; `nonce` is "" for args (they end up in PVE's VM config) and without registration. */
export const instanceTemplateData = (shard: ShardContextShape, config: ShardConfig, group: Group, instanceId: string, nonce: string): TemplateMap => {
  const host = shard.advertiseHost ?? shard.registration?.advertiseHost
  const inputs: TemplateInputs = {
    config,
    group,
    instanceId,
    nonce,
    caPem: shard.registration?.pki.caPem ?? "",
    server: {
      registrationAddr: advertisedAddress(config.shard.advertise.registration, host),
      agentAddr: advertisedAddress(config.shard.advertise.agent, host),
      operatorAddr: advertisedAddress(config.shard.advertise.operator, host)
    }
  }
  return templateData(inputs)
}

/** The user-data template of a group's VMs, decoded: "" without user-data, the URL's body fetched now for `source: "url"`. */
export const userDataTemplateText = (instanceId: string, step: StepName, userdata: Userdata | undefined) =>
  Effect.gen(function* () {
    if (userdata === undefined) return ""
    let body: string | Uint8Array = userdata.content
    let from = ""
    if (userdata.source === "url") {
      const url = parseUserDataUrl(userdata.content)
      if (Either.isLeft(url)) return yield* permanentStepError(instanceId, step, `user-data URL ${url.left}`)
      from = ` from ${redactedUrl(url.right)}`
      body = yield* (yield* UserDataSource).fetch(url.right).pipe(
        Effect.mapError((error) => (error.transient ? waitingStepError : permanentStepError)(instanceId, step, error.message))
      )
    }
    const text = decodeUserData(userdata.encoding, body)
    if (Either.isLeft(text)) return yield* permanentStepError(instanceId, step, `user-data (${userdata.encoding}${from}) ${text.left}`)
    return text.right
  })
