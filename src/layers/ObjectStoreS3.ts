/**
 * The object store on S3 and S3-compatible servers (AWS, Ceph RGW, SeaweedFS, MinIO): conditional writes
 * with `If-Match` / `If-None-Match: *`, and ambiguous outcomes (a 500 from RGW on a lost race, a timeout
 * after the server applied the write) resolved by re-reading the key rather than by guessing.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig
} from "@aws-sdk/client-s3"
import { Chunk, Duration, Effect, Layer, Option, Stream } from "effect"
import { s3EndpointProblem } from "../domain/endpointUrl.js"
import { objectKeyProblem, objectPrefixProblem } from "../domain/objectKey.js"
// Shared with the GCS layer, from a neutral module: choosing GCS does not load the AWS SDK.
import { retryTransient, settleAmbiguousPut } from "./storeSettle.js"
import {
  AccessDenied,
  InvalidKey,
  NotFound,
  ObjectStore,
  type ObjectMeta,
  type ObjectStoreShape,
  type Precondition,
  PreconditionFailed,
  type StoreError,
  StoreUnavailable
} from "../services/ObjectStore.js"

// The SDK warns (six lines on stderr, at the first client) that releases after January 2027 will need
// Node 22; that is a notice for us, not for an operator running a supported Node. Set before any client
// is built; an explicit setting by the operator wins.
process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"

export interface S3StoreOptions {
  readonly bucket: string
  /** Defaults to `AWS_ENDPOINT_URL` (unset: AWS itself). */
  readonly endpoint?: string
  /** Defaults to `AWS_REGION` / `AWS_DEFAULT_REGION`; `us-east-1` when an endpoint is given without one. */
  readonly region?: string
  /** Defaults to `AWS_S3_USE_PATH_STYLE=true`; most self-hosted servers want path-style URLs. */
  readonly forcePathStyle?: boolean
  /** Explicit keys (tests); otherwise the standard AWS credential chain (env, profile, SSO, IMDS…). */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string }
  /** Retries of transient failures per operation (default 5). */
  readonly retries?: number
  /** Per-request socket timeout (default 15 s). */
  readonly requestTimeout?: Duration.DurationInput
}

const unquote = (etag: string | undefined) => (etag ?? "").replace(/^(W\/)?"(.*)"$/, "$2")

interface Failure {
  readonly name: string
  readonly status: number | undefined
  readonly code: string | undefined
  readonly text: string
}

/** The client cannot be used as configured (see `setupProblem`); classified as AccessDenied, never retried. */
class SetupProblem {
  constructor(readonly fields: { readonly reason: string }) {}
}

const describe = (error: unknown): Failure => {
  if (typeof error !== "object" || error === null) return { name: "Error", status: undefined, code: undefined, text: String(error) }
  const record = error as { name?: unknown; code?: unknown; message?: unknown; $metadata?: { httpStatusCode?: unknown } }
  const status = typeof record.$metadata?.httpStatusCode === "number" ? record.$metadata.httpStatusCode : undefined
  const name = typeof record.name === "string" ? record.name : "Error"
  const code = typeof record.code === "string" ? record.code : undefined
  const message = typeof record.message === "string" ? record.message : ""
  return { name, status, code, text: message === "" || message === "UnknownError" ? name : `${name}: ${message}` }
}

const credentialNames = new Set(["InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "CredentialsProviderError"])

const networkCodes = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EPIPE"])

/** Maps an SDK failure that is not NotFound/PreconditionFailed to the contract's StoreError. */
const classify = (operation: string, key: string, bucket: string, error: unknown, endpoint: string): AccessDenied | StoreUnavailable => {
  if (error instanceof SetupProblem) return new AccessDenied({ operation, key, reason: error.fields.reason })
  const f = describe(error)
  if (f.status === undefined && (networkCodes.has(f.code ?? "") || f.name === "TimeoutError")) {
    return new StoreUnavailable({ operation, key, reason: `cannot reach ${endpoint} (${f.code ?? f.name})`, cause: error })
  }
  if (f.name === "NoSuchBucket") return new AccessDenied({ operation, key, reason: `bucket "${bucket}" does not exist` })
  if (credentialNames.has(f.name)) return new AccessDenied({ operation, key, reason: `credentials rejected (${f.name})` })
  if (f.name === "PermanentRedirect" || f.status === 301) {
    return new AccessDenied({ operation, key, reason: `bucket "${bucket}" is in another region (set AWS_REGION)` })
  }
  if (f.status === 403 || f.name === "AccessDenied") return new AccessDenied({ operation, key, reason: `access denied (${f.name})` })
  if (f.status === undefined || f.status >= 500 || f.status === 429 || f.status === 408 || f.name === "SlowDown" || f.name === "RequestTimeout") {
    const reason = f.status === undefined ? (f.code ?? f.text) : `HTTP ${f.status} ${f.text}`
    return new StoreUnavailable({ operation, key, reason, cause: error })
  }
  // Any other 4xx is a request the server will keep refusing: retrying cannot help.
  return new AccessDenied({ operation, key, reason: `HTTP ${f.status} ${f.text}` })
}

const isNotFound = (f: Failure) => f.name === "NoSuchKey" || f.name === "NotFound" || (f.status === 404 && f.name !== "NoSuchBucket")

/** Connection failures before any byte was sent: the write certainly did not happen. */
const neverSent = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"])

/** Failures after which a conditional PUT may or may not have been applied. */
const isAmbiguous = (f: Failure) =>
  (f.status === undefined && !neverSent.has(f.code ?? "")) || (f.status !== undefined && f.status >= 500) ||
  f.status === 409 || f.name === "ConditionalRequestConflict"

const checkKey = (key: string) => {
  const problem = objectKeyProblem(key)
  return problem === undefined ? Effect.void : Effect.fail(new InvalidKey({ key, reason: problem }))
}

const envRegion = () => process.env["AWS_REGION"] ?? process.env["AWS_DEFAULT_REGION"]

export const makeS3Client = (options: S3StoreOptions): S3Client => {
  const endpoint = options.endpoint ?? (process.env["AWS_ENDPOINT_URL_S3"] || process.env["AWS_ENDPOINT_URL"] || undefined)
  const region = options.region ?? envRegion() ?? (endpoint !== undefined ? "us-east-1" : undefined)
  const config: S3ClientConfig = {
    forcePathStyle: options.forcePathStyle ?? process.env["AWS_S3_USE_PATH_STYLE"] === "true",
    // Checksums on every request break streamed uploads on several S3-compatible servers (411).
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    // Retries are ours (logged, and aware of ambiguous conditional writes); the SDK must not add its own.
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: 5_000,
      requestTimeout: Duration.toMillis(options.requestTimeout ?? "15 seconds")
    },
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(region === undefined ? {} : { region }),
    ...(options.credentials === undefined ? {} : { credentials: options.credentials })
  }
  return new S3Client(config)
}

export const makeS3Store = (options: S3StoreOptions, client: S3Client = makeS3Client(options)): ObjectStoreShape => {
  const { bucket } = options
  const retries = options.retries ?? 5
  const endpoint = options.endpoint ?? (process.env["AWS_ENDPOINT_URL_S3"] || process.env["AWS_ENDPOINT_URL"] || "the AWS S3 endpoint")

  // A malformed endpoint variable fails every call at once, naming it: the SDK's own error (ERR_INVALID_URL)
  // would read as an unreachable store and be retried.
  const setupProblem = options.endpoint === undefined ? s3EndpointProblem(process.env) : undefined
  const send = <A>(run: (signal: AbortSignal) => Promise<A>) =>
    setupProblem === undefined
      ? Effect.tryPromise({ try: run, catch: (error) => error })
      : Effect.fail(new SetupProblem({ reason: setupProblem }))

  const withRetry = <A, E extends { readonly _tag: string; readonly message: string }>(
    operation: string,
    key: string,
    effect: Effect.Effect<A, E>
  ) => retryTransient(operation, key, retries)(effect)

  const getOnce = (key: string): Effect.Effect<{ body: Uint8Array; etag: string }, NotFound | AccessDenied | StoreUnavailable> =>
    send(async (abortSignal) => {
      const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal })
      const body = out.Body === undefined ? new Uint8Array() : await out.Body.transformToByteArray()
      return { body, etag: unquote(out.ETag) }
    }).pipe(
      Effect.mapError((error) => (isNotFound(describe(error)) ? new NotFound({ key }) : classify("get", key, bucket, error, endpoint)))
    )

  const get = Effect.fn("objectStore.s3.get")(function* (key: string) {
    yield* checkKey(key)
    return yield* withRetry("get", key, getOnce(key))
  })

  const head = Effect.fn("objectStore.s3.head")(function* (key: string) {
    yield* checkKey(key)
    return yield* withRetry(
      "head",
      key,
      send((abortSignal) => client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal })).pipe(
        Effect.map((out): ObjectMeta => ({ key, size: out.ContentLength ?? 0, etag: unquote(out.ETag) })),
        // HEAD responses have no body, so a missing bucket also reads as 404 here: only GET can tell them apart.
        Effect.mapError((error) => (isNotFound(describe(error)) ? new NotFound({ key }) : classify("head", key, bucket, error, endpoint)))
      )
    )
  })

  const putOnce = (key: string, body: Uint8Array, precondition: Precondition | undefined) =>
    send((abortSignal) =>
      client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ContentLength: body.byteLength,
          // RGW compares If-Match literally against the unquoted ETag: a quoted value never matches.
          ...(precondition?._tag === "IfMatch" ? { IfMatch: precondition.etag } : {}),
          ...(precondition?._tag === "IfAbsent" ? { IfNoneMatch: "*" } : {})
        }),
        { abortSignal }
      )
    ).pipe(
      Effect.map((out) => ({ etag: unquote(out.ETag) })),
      Effect.catchAll((error): Effect.Effect<{ readonly etag: string }, PreconditionFailed | AccessDenied | StoreUnavailable> => {
        const f = describe(error)
        if (precondition === undefined || error instanceof SetupProblem) return Effect.fail(classify("put", key, bucket, error, endpoint))
        if (f.status === 412 || f.name === "PreconditionFailed") return Effect.fail(new PreconditionFailed({ key, precondition }))
        // AWS answers If-Match on a missing key with 404; RGW with 412. Both mean the precondition failed.
        if (precondition._tag === "IfMatch" && f.name !== "NoSuchBucket" && isNotFound(f)) {
          return Effect.fail(new PreconditionFailed({ key, precondition }))
        }
        if (isAmbiguous(f) && f.name !== "NoSuchBucket") {
          const reason = f.status === undefined ? (f.code ?? f.text) : `HTTP ${f.status} ${f.name}`
          return Effect.logInfo(`object store: conditional put ${key} ambiguous (${reason}); re-reading`).pipe(
            Effect.zipRight(
              settleAmbiguousPut(
                key,
                body,
                precondition,
                getOnce(key).pipe(
                  Effect.catchTag("NotFound", () => Effect.succeed(undefined)),
                  Effect.catchTag("StoreUnavailable", (e) =>
                    Effect.fail(new StoreUnavailable({ operation: "put", key, reason: `outcome unknown (${reason}) and re-read failed: ${e.reason}`, cause: e }))
                  )
                ),
                reason
              )
            )
          )
        }
        return Effect.fail(classify("put", key, bucket, error, endpoint))
      })
    )

  const put = Effect.fn("objectStore.s3.put")(function* (key: string, body: Uint8Array, precondition?: Precondition) {
    yield* checkKey(key)
    return yield* withRetry("put", key, putOnce(key, body, precondition))
  })

  const del = Effect.fn("objectStore.s3.delete")(function* (key: string) {
    yield* checkKey(key)
    yield* withRetry(
      "delete",
      key,
      send((abortSignal) => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }), { abortSignal })).pipe(
        Effect.asVoid,
        Effect.catchAll((error) => (describe(error).name === "NoSuchKey" ? Effect.void : Effect.fail(classify("delete", key, bucket, error, endpoint))))
      )
    )
  })

  const list = (prefix: string, startAfter?: string): Stream.Stream<ObjectMeta, StoreError> => {
    const problem = objectPrefixProblem(prefix)
    if (problem !== undefined) return Stream.fail(new InvalidKey({ key: prefix, reason: problem }))
    const page = (token: string | undefined) =>
      withRetry(
        "list",
        prefix,
        send((abortSignal) =>
          client.send(
            new ListObjectsV2Command({
              Bucket: bucket,
              Prefix: prefix === "" ? undefined : prefix,
              ...(token === undefined ? (startAfter === undefined ? {} : { StartAfter: startAfter }) : { ContinuationToken: token })
            }),
            { abortSignal }
          )
        ).pipe(Effect.mapError((error) => classify("list", prefix, bucket, error, endpoint)))
      ).pipe(
        Effect.map((out) => {
          const items = (out.Contents ?? []).flatMap((item): ReadonlyArray<ObjectMeta> =>
            item.Key === undefined ? [] : [{ key: item.Key, size: item.Size ?? 0, etag: unquote(item.ETag) }]
          )
          const next = out.IsTruncated === true && out.NextContinuationToken !== undefined ? Option.some(out.NextContinuationToken) : Option.none()
          return [Chunk.fromIterable(items), next] as const
        })
      )
    return Stream.paginateChunkEffect(undefined as string | undefined, page)
  }

  return ObjectStore.of({ get, head, put, delete: del, list })
}

/** The S3 store as a layer; the client is destroyed (sockets closed) with the layer's scope. */
export const ObjectStoreS3 = (options: S3StoreOptions) =>
  Layer.scoped(
    ObjectStore,
    Effect.acquireRelease(Effect.sync(() => makeS3Client(options)), (client) => Effect.sync(() => client.destroy())).pipe(
      Effect.map((client) => makeS3Store(options, client))
    )
  )
