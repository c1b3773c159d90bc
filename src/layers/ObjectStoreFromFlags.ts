/**
 * One place that turns the operator's `--storage`/`--bucket` choice into an ObjectStore layer, so that
 * `nstance-server` and `nstance-admin` cannot disagree about what a bucket name means.
 */
import { Effect, Layer } from "effect"
import type { ObjectStore, StoreError } from "../services/ObjectStore.js"
import { ObjectStoreFile } from "./ObjectStoreFile.js"
import { ObjectStoreMemory } from "./ObjectStoreMemory.js"

// The cloud SDKs take seconds to load; only the chosen one is imported, and only when the layer is built.
const lazy = <M>(load: () => Promise<M>, build: (module: M) => Layer.Layer<ObjectStore, StoreError>) =>
  Layer.unwrapEffect(Effect.map(Effect.promise(load), build))

export const STORAGE_KINDS = ["s3", "gcs", "file", "memory"] as const
export type StorageKind = (typeof STORAGE_KINDS)[number]

export interface StorageFlags {
  readonly storage: StorageKind
  /** S3/GCS bucket name, or the directory of the file store (created if missing); ignored for memory. */
  readonly bucket: string
}

/** S3 and GCS take endpoint, region and credentials from the standard environment (see README). */
export const objectStoreLayer = (flags: StorageFlags): Layer.Layer<ObjectStore, StoreError> => {
  switch (flags.storage) {
    case "s3":
      return lazy(() => import("./ObjectStoreS3.js"), (m) => m.ObjectStoreS3({ bucket: flags.bucket }))
    case "gcs":
      return lazy(() => import("./ObjectStoreGcs.js"), (m) => m.ObjectStoreGcs({ bucket: flags.bucket }))
    case "file":
      return ObjectStoreFile({ directory: flags.bucket })
    case "memory":
      return ObjectStoreMemory
  }
}

/** A human-readable location for messages: `s3://bucket/key`, `file:///dir/key`. */
export const describeLocation = (flags: StorageFlags, key: string) =>
  flags.storage === "file" ? `file://${flags.bucket.replace(/\/$/, "")}/${key}` : `${flags.storage}://${flags.bucket}/${key}`
