/**
 * Module hooks for the chaos CLI's source breaks (`--break duplicate-vmid`, `--break reversed-scale-down`):
 * the product module is loaded as usual (tsx transpiles and minifies it) and then patched in memory, so a planted bug
 * needs no copy of the product and no hook in it. A patch whose text is no longer in the module fails the
 * load, naming it: a product change that moved the code must move the patch too.
 */

/** Per break mode: the module (path suffix) and the replacements that plant the bug. */
const PATCHES = {
  // The allocator forgets every VMID it handed out this term: two creations picking before either's
  // CloneRequested lands get the same VMID.
  "duplicate-vmid": {
    module: "/src/shard/SagaLimits.ts",
    replace: [
      [/if\s*\(\s*picked\s*!==\s*(?:undefined|void 0)\s*\)\s*handedOut\.add\(\s*picked\s*\)\s*;?/, ""],
      [/return\s*\[\s*picked\s*,\s*picked\s*\?\?\s*last\s*\]/, "return [picked, last]"]
    ]
  },
  // Scale-down picks running instances first, not-yet-running ones last.
  "reversed-scale-down": {
    module: "/src/domain/shard/plan.ts",
    replace: [[/Number\(\s*isStarted\(\s*a\s*\)\s*\)\s*-\s*Number\(\s*isStarted\(\s*b\s*\)\s*\)/, "Number(isStarted(b)) - Number(isStarted(a))"]]
  }
}

let patch

export async function initialize(data) {
  patch = PATCHES[data.mode]
  if (patch === undefined) throw new Error(`chaos break hooks: no source patch for ${data.mode}`)
}

export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context)
  if (patch === undefined || !url.split("?")[0].endsWith(patch.module)) return result
  let source = typeof result.source === "string" ? result.source : new TextDecoder().decode(result.source)
  for (const [pattern, replacement] of patch.replace) {
    if (!pattern.test(source)) throw new Error(`chaos break hooks: ${pattern} not found in ${patch.module}; move the patch with the code`)
    source = source.replace(pattern, replacement)
  }
  return { ...result, source }
}
