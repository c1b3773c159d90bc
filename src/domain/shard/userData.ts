/**
 * The user-data a group's VMs boot with: the template's `userdata` (else the defaults'), decoded from its
 * written encoding. Pure; the create saga turns a failure here into a permanent step error.
 */
import { gunzipSync } from "node:zlib"
import type { Group, ShardConfig, Userdata } from "../config/index.js"

export const userDataSource = (config: ShardConfig, group: Group): Userdata | undefined =>
  config.templates[group.template]?.userdata ?? config.defaults.userdata

/** The user-data text, or a string starting with "cannot" that says why there is none. */
export const decodeUserData = (userdata: Userdata | undefined): { readonly text: string } | { readonly problem: string } => {
  if (userdata === undefined) return { text: "" }
  if (userdata.source !== "inline") return { problem: `user-data source ${userdata.source} is not supported by this build (use inline content)` }
  try {
    switch (userdata.encoding) {
      case "plain":
        return { text: userdata.content }
      case "base64":
        return { text: Buffer.from(userdata.content, "base64").toString("utf8") }
      case "base64+gzip":
      case "gzip":
        return { text: gunzipSync(Buffer.from(userdata.content, "base64")).toString("utf8") }
    }
  } catch (error) {
    return { problem: `user-data (${userdata.encoding}) does not decode: ${error instanceof Error ? error.message : String(error)}` }
  }
}
