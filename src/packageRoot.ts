/**
 * The directory of this package (where package.json is), found by walking up from this module. Files the
 * commands read at run time (the bundled examples, the simulator's API schema) are resolved from it, so
 * they are found the same way from the TypeScript sources (tsx, tests) and from the compiled dist/ bundles.
 */
import { existsSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const isOurPackage = (dir: string): boolean => {
  const manifest = join(dir, "package.json")
  if (!existsSync(manifest)) return false
  try {
    const parsed: unknown = JSON.parse(readFileSync(manifest, "utf8"))
    return typeof parsed === "object" && parsed !== null && "name" in parsed && parsed.name === "nstance"
  } catch {
    return false
  }
}

const find = (): string => {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (isOurPackage(dir)) return dir
    const parent = dirname(dir)
    if (parent === dir) return process.cwd()
    dir = parent
  }
}

let cached: string | undefined

export const packageRoot = (): string => (cached ??= find())

/** A path inside the package, e.g. `packagePath("examples", "single-cluster.jsonc")`. */
export const packagePath = (...parts: ReadonlyArray<string>): string => join(packageRoot(), ...parts)
