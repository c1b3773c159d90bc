/**
 * Before any test file runs: compile dist/ if a source changed since the last build, so the tests that
 * start our commands as processes run the code under test, as an operator would; then say which real
 * components (test/support/realComponents.ts) this machine lacks — one line each, with the command that
 * installs it — and under CI fail the run for any of them.
 */
// @ts-expect-error — a plain ESM build script without type declarations
import { buildAll } from "../../scripts/build.mjs"
import type { TestProject } from "vitest/node"
import { isCi, missingLine, probeRealComponents, REAL_COMPONENTS } from "./realComponents.js"

export default async function setup(project: TestProject): Promise<void> {
  await (buildAll as (options: { ifStale: boolean }) => Promise<boolean>)({ ifStale: true })
  // Probed here, in the main process and asynchronously; the workers read the result (`skipWithout`).
  const found = await probeRealComponents()
  project.provide("realComponentsMissing", found)
  const missing = REAL_COMPONENTS.flatMap((c) => {
    const what = found[c.name]
    return what === undefined ? [] : [{ c, what }]
  })
  if (missing.length === 0) return
  if (isCi()) {
    throw new Error(`CI=true and real components are missing:\n${missing.map(({ c, what }) => `  ${c.checks}: missing ${what}; install with: ${c.install}`).join("\n")}`)
  }
  for (const { c, what } of missing) console.warn(missingLine(c, what))
}
