/**
 * The deliberately broken builds the chaos harness can run, in a module of its own (no imports): the CLI
 * registers the module patches of a source break (breakHooks.mjs) before it loads anything of the product.
 *
 * A deliberately broken product, to show the checker fails (`--break NAME` or `NSTANCE_CHAOS_BREAK`). Made by
 * the harness's wrappers, around an unchanged product:
 * - `skip-iso-delete`: compensation that skips the ISO delete;
 * - `log-nonce`: (registration worlds) a leader that logs each nonce it mints;
 * - `retire-deletes-at-once`: (worlds that roll out) every retirement a delete at once, before any replacement
 *   (each log segment with a `RetirementRequested` also carries the instance's `DeleteRequested{retired}` —
 *   what every later leader and the checker read);
 * - `lost-append-ok`: a conditional log write refused (the sequence number is another writer's) taken as success;
 * - `unconditional-append`: log segments written without `IfAbsent`, so two writers may both "own" one seq;
 * - `delete-skips-ownership`: a delete that acts on the VMID its log records without looking whose VM is there
 *   (the wrapper answers its look with the instance's name);
 * - `delete-ignores-placeholder`: a delete that takes a clone's nameless, locked placeholder for "not ours,
 *   gone" (the wrapper hides the lock from its look).
 * And made by a patched copy of one product module, loaded in place of the real one (breakHooks.mjs, CLI only):
 * - `duplicate-vmid`: a VMID allocator that forgets what it handed out this term;
 * - `reversed-scale-down`: scale-down that removes running instances before not-yet-running ones.
 */
export type BreakMode =
  | "none"
  | "skip-iso-delete"
  | "log-nonce"
  | "retire-deletes-at-once"
  | "lost-append-ok"
  | "unconditional-append"
  | "delete-skips-ownership"
  | "delete-ignores-placeholder"
  | "duplicate-vmid"
  | "reversed-scale-down"
/** The modes made by a patched copy of a product module (breakHooks.mjs): only the CLI can load them. */
export const SOURCE_BREAKS: ReadonlyArray<BreakMode> = ["duplicate-vmid", "reversed-scale-down"]

export const BREAK_MODES: ReadonlyArray<BreakMode> = [
  "none",
  "skip-iso-delete",
  "log-nonce",
  "retire-deletes-at-once",
  "lost-append-ok",
  "unconditional-append",
  "delete-skips-ownership",
  "delete-ignores-placeholder",
  "duplicate-vmid",
  "reversed-scale-down"
]
