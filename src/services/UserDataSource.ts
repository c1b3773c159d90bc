/**
 * Where a template's `userdata` with `source: "url"` comes from: an HTTP(S) GET at create time, as the
 * original does. The contract only; the HTTP client is in `src/layers/UserDataSourceHttp.ts`.
 */
import { Context, Data, type Effect } from "effect"

export class UserDataFetchFailed extends Data.TaggedError("UserDataFetchFailed")<{
  /** The URL as it may be logged (`redactedUrl`: no query string). */
  readonly url: string
  readonly reason: string
  /**
   * True when fetching again later may work (not 200, unreachable, timed out): the create waits and
   * retries. False when the answer itself is unusable (too large): the create fails.
   */
  readonly transient: boolean
}> {
  override get message() {
    return `user-data from ${this.url}: ${this.reason}`
  }
}

export class UserDataSource extends Context.Tag("nstance/UserDataSource")<UserDataSource, {
  /** The body of a 200 answer to `GET url`, at most `MAX_USERDATA_FETCH_BYTES`. */
  readonly fetch: (url: URL) => Effect.Effect<Uint8Array, UserDataFetchFailed>
}>() {}
