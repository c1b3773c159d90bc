/**
 * The options of the admin commands that act on a cluster's bucket as its servers do (operator certificates,
 * secrets): where the bucket is, its name, and a shard prefix other than the default.
 */
import { Options } from "@effect/cli"

export const storage = Options.choice("storage", ["s3", "gcs", "file"] as const).pipe(
  Options.withDescription("Where the cluster's bucket is: s3 (AWS_* env), gcs, or file (a directory)")
)
export const bucket = Options.text("bucket").pipe(Options.withDescription("Bucket name (s3, gcs) or directory (file): the one the servers use"))
export const prefix = Options.text("prefix").pipe(Options.withDescription("Key prefix of the shard instead of shard/{shard}/"), Options.optional)
