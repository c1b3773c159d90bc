/** The messages of an agent's file stream (`ReceiveFiles`): one schema for the server that sends them and the agent that applies them. */
import { Schema } from "effect"

/**
 * What the file stream carries: the keys the VM's certificate files need (the agent makes each, keeps the
 * private half and submits the public one with `SubmitKey`), a file's new content, and a commit naming every
 * file the VM should hold now — after it the agent removes the files it wrote earlier that are not named.
 * A file that cannot be made right now (a key not yet submitted, a secret missing) is named in the commit
 * without content, so the VM keeps the version it has.
 */
export const FileMessage = Schema.Union(
  Schema.TaggedStruct("KeysWanted", { names: Schema.Array(Schema.String) }),
  Schema.TaggedStruct("File", {
    name: Schema.String,
    /** Permission bits. */
    mode: Schema.Int,
    contentBase64: Schema.String,
    /** SHA-256 hex of the content. */
    digest: Schema.String
  }),
  Schema.TaggedStruct("Commit", { names: Schema.Array(Schema.String) })
)
export type FileMessage = typeof FileMessage.Type
