/**
 * The worker's side of test/support/realComponents.ts: which components the global setup found missing
 * (handed over with vitest's provide/inject, so no worker runs a probe of its own). Kept apart from the
 * probe module because the global setup must not import "vitest".
 */
import { inject } from "vitest"
import { isCi, type RealComponent } from "./realComponents.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** What the global setup found missing, by component name (absent: present). */
    readonly realComponentsMissing: Readonly<Record<string, string>>
  }
}

/** What is missing of a component, as the global setup found it, or undefined when it is there. */
export const missingOf = (name: RealComponent["name"]): string | undefined => inject("realComponentsMissing")[name]

/**
 * True when the suite must be skipped: the component is missing and this is not CI. Under CI a missing
 * component is not skipped; the suite runs and fails, and the global setup has already failed the run.
 */
export const skipWithout = (name: RealComponent["name"]): boolean => missingOf(name) !== undefined && !isCi()

