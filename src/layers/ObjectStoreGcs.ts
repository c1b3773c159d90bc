/**
 * The object store on Google Cloud Storage. The etag is the object generation (a decimal string), the
 * precondition is `ifGenerationMatch` (0 = must not exist), and credentials come from Application Default
 * Credentials. Ambiguous conditional writes are settled by re-reading, as for S3.
 */
import { type File, Storage, type StorageOptions } from "@google-cloud/storage"
import { Chunk, Effect, Layer, Option, Stream } from "effect"
import { objectKeyProblem, objectPrefixProblem } from "../domain/objectKey.js"
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
import { retryTransient, settleAmbiguousPut } from "./storeSettle.js"

export interface GcsStoreOptions {
  readonly bucket: string
  /** A JSON API endpoint (an emulator or fake in tests); defaults to `STORAGE_EMULATOR_HOST`, else Google. */
  readonly apiEndpoint?: string
  readonly projectId?: string
  /** Retries of transient failures per operation (default 5). */
  readonly retries?: number
  /** Page size for list (default 1,000, the API maximum). */
  readonly pageSize?: number
}

const statusOf = (error: unknown): number | undefined => {
  if (typeof error !== "object" || error === null || !("code" in error)) return undefined
  return typeof error.code === "number" ? error.code : undefined
}
const textOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

const classify = (operation: string, key: string, bucket: string, error: unknown): AccessDenied | StoreUnavailable => {
  const status = statusOf(error)
  const text = textOf(error)
  if (status === 404) return new AccessDenied({ operation, key, reason: `bucket "${bucket}" does not exist` })
  if (status === 401) return new AccessDenied({ operation, key, reason: `credentials rejected (${text})` })
  if (status === 403) return new AccessDenied({ operation, key, reason: `access denied (${text})` })
  if (/Could not load the default credentials|invalid_grant|unauthorized_client/i.test(text)) {
    return new AccessDenied({ operation, key, reason: `no usable credentials (${text}); set GOOGLE_APPLICATION_CREDENTIALS` })
  }
  if (status === undefined || status >= 500 || status === 429 || status === 408) {
    return new StoreUnavailable({ operation, key, reason: status === undefined ? text : `HTTP ${status} ${text}`, cause: error })
  }
  return new AccessDenied({ operation, key, reason: `HTTP ${status} ${text}` })
}

/** A 404 names the object unless the server says the bucket is what is missing. */
const isObjectMissing = (error: unknown) => statusOf(error) === 404 && !/bucket/i.test(textOf(error))

const checkKey = (key: string) => {
  const problem = objectKeyProblem(key)
  return problem === undefined ? Effect.void : Effect.fail(new InvalidKey({ key, reason: problem }))
}

const generationOf = (metadata: { readonly generation?: string | number | undefined }) =>
  metadata.generation === undefined ? "" : String(metadata.generation)

export const makeGcsStorage = (options: GcsStoreOptions): Storage => {
  const apiEndpoint = options.apiEndpoint ?? (process.env["STORAGE_EMULATOR_HOST"] || undefined)
  const config: StorageOptions = {
    // Retries are ours, so that they are bounded, logged and aware of ambiguous conditional writes.
    retryOptions: { autoRetry: false },
    ...(apiEndpoint === undefined ? {} : { apiEndpoint }),
    ...(options.projectId === undefined ? {} : { projectId: options.projectId })
  }
  return new Storage(config)
}

export const makeGcsStore = (options: GcsStoreOptions, storage: Storage = makeGcsStorage(options)): ObjectStoreShape => {
  const bucketName = options.bucket
  const bucket = storage.bucket(bucketName)
  const retries = options.retries ?? 5
  const usesCustomEndpoint = (options.apiEndpoint ?? process.env["STORAGE_EMULATOR_HOST"]) !== undefined

  const call = <A>(run: () => Promise<A>) => Effect.tryPromise({ try: run, catch: (error) => error })

  const withRetry = <A, E extends { readonly _tag: string; readonly message: string }>(operation: string, key: string, effect: Effect.Effect<A, E>) =>
    retryTransient(operation, key, retries)(effect)

  const notFoundOr = (operation: string, key: string) => (error: unknown) =>
    isObjectMissing(error) ? new NotFound({ key }) : classify(operation, key, bucketName, error)

  const headOnce = (key: string) =>
    call(() => bucket.file(key).getMetadata()).pipe(
      Effect.map(([metadata]): ObjectMeta => ({ key, size: Number(metadata.size ?? 0), etag: generationOf(metadata) })),
      Effect.mapError(notFoundOr("head", key))
    )

  // Metadata first, then the bytes of exactly that generation: a concurrent overwrite makes the download
  // 404, and the read starts over instead of pairing new bytes with an old generation.
  const getOnce = (key: string): Effect.Effect<{ body: Uint8Array; etag: string }, NotFound | AccessDenied | StoreUnavailable> =>
    Effect.flatMap(headOnce(key), (meta) =>
      call(() => bucket.file(key, { generation: Number(meta.etag) }).download()).pipe(
        Effect.map(([bytes]) => ({ body: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), etag: meta.etag })),
        Effect.catchAll((error) => (isObjectMissing(error) ? getOnce(key) : Effect.fail(classify("get", key, bucketName, error))))
      )
    )

  const get = Effect.fn("objectStore.gcs.get")(function* (key: string) {
    yield* checkKey(key)
    return yield* withRetry("get", key, getOnce(key))
  })

  const head = Effect.fn("objectStore.gcs.head")(function* (key: string) {
    yield* checkKey(key)
    return yield* withRetry("head", key, headOnce(key))
  })

  const putOnce = (key: string, body: Uint8Array, precondition: Precondition | undefined) => {
    const file: File = bucket.file(key)
    const ifGenerationMatch =
      precondition === undefined ? undefined : precondition._tag === "IfAbsent" ? 0 : Number(precondition.etag)
    if (ifGenerationMatch !== undefined && !Number.isSafeInteger(ifGenerationMatch)) {
      return Effect.fail(new PreconditionFailed({ key, precondition: precondition! }))
    }
    return call(async () => {
      await file.save(Buffer.from(body.buffer, body.byteOffset, body.byteLength), {
        resumable: false,
        // Real GCS returns the crc32c the client checks; fakes and some emulators do not.
        validation: usesCustomEndpoint ? false : "crc32c",
        ...(ifGenerationMatch === undefined ? {} : { preconditionOpts: { ifGenerationMatch } })
      })
      return { etag: generationOf(file.metadata) }
    }).pipe(
      Effect.catchAll((error): Effect.Effect<{ readonly etag: string }, PreconditionFailed | AccessDenied | StoreUnavailable> => {
        const status = statusOf(error)
        if (precondition === undefined) return Effect.fail(classify("put", key, bucketName, error))
        if (status === 412) return Effect.fail(new PreconditionFailed({ key, precondition }))
        if (status === undefined || status >= 500 || status === 409 || status === 429) {
          const reason = status === undefined ? textOf(error) : `HTTP ${status}`
          return settleAmbiguousPut(
            key,
            body,
            precondition,
            getOnce(key).pipe(Effect.catchTag("NotFound", () => Effect.succeed(undefined))),
            reason
          )
        }
        return Effect.fail(classify("put", key, bucketName, error))
      })
    )
  }

  const put = Effect.fn("objectStore.gcs.put")(function* (key: string, body: Uint8Array, precondition?: Precondition) {
    yield* checkKey(key)
    return yield* withRetry("put", key, putOnce(key, body, precondition))
  })

  const del = Effect.fn("objectStore.gcs.delete")(function* (key: string) {
    yield* checkKey(key)
    yield* withRetry(
      "delete",
      key,
      call(() => bucket.file(key).delete()).pipe(
        Effect.asVoid,
        Effect.catchAll((error) => (isObjectMissing(error) ? Effect.void : Effect.fail(classify("delete", key, bucketName, error))))
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
        call(() =>
          bucket.getFiles({
            autoPaginate: false,
            maxResults: options.pageSize ?? 1000,
            ...(prefix === "" ? {} : { prefix }),
            // startOffset is inclusive; the exact key is dropped below.
            ...(startAfter === undefined ? {} : { startOffset: startAfter }),
            ...(token === undefined ? {} : { pageToken: token })
          })
        ).pipe(Effect.mapError((error) => classify("list", prefix, bucketName, error)))
      ).pipe(
        Effect.map(([files, next]) => {
          const items = files
            .filter((file) => file.name !== startAfter)
            .map((file): ObjectMeta => ({ key: file.name, size: Number(file.metadata.size ?? 0), etag: generationOf(file.metadata) }))
          const token = typeof next === "object" && next !== null && "pageToken" in next && typeof next.pageToken === "string" ? next.pageToken : undefined
          return [Chunk.fromIterable(items), Option.fromNullable(token)] as const
        })
      )
    return Stream.paginateChunkEffect(undefined as string | undefined, page)
  }

  return ObjectStore.of({ get, head, put, delete: del, list })
}

export const ObjectStoreGcs = (options: GcsStoreOptions) => Layer.sync(ObjectStore, () => makeGcsStore(options))
