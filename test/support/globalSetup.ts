/**
 * Before any test file runs: compile dist/ if a source changed since the last build, so the tests that
 * start our commands as processes run the code under test, as an operator would.
 */
// @ts-expect-error — a plain ESM build script without type declarations
import { buildAll } from "../../scripts/build.mjs"

export default async function setup(): Promise<void> {
  await (buildAll as (options: { ifStale: boolean }) => Promise<boolean>)({ ifStale: true })
}
