/**
 * Object-store keys are paths under a bucket or a directory. One rule for every store keeps a key that
 * works in the memory store from escaping the directory of the file store.
 */

/** Returns a reason when `key` is not a safe object key, or undefined when it is. */
export const objectKeyProblem = (key: string): string | undefined => {
  if (key.length === 0) return "must not be empty"
  if (key.length > 1024) return "must be at most 1024 characters"
  if (key.startsWith("/")) return "must not start with '/'"
  if (key.includes("\\")) return "must not contain '\\'"
  if (key.includes("\u0000")) return "must not contain NUL"
  if (key.split("/").some((part) => part === ".." || part === ".")) return "must not contain '.' or '..' segments"
  if (key.includes("//")) return "must not contain empty segments ('//')"
  return undefined
}

/** A prefix is a key that may be empty and, when nesting is wanted, ends with '/'. */
export const objectPrefixProblem = (prefix: string): string | undefined =>
  prefix === "" ? undefined : objectKeyProblem(prefix)
