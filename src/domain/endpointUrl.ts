/**
 * The rules an endpoint URL from the environment (`PROXMOX_API_URL`, `AWS_ENDPOINT_URL`) must meet before a
 * start goes on. Each is a base that request paths are appended to, so what `new URL` quietly accepts or
 * rewrites — `..` segments (resolved away, so the server is not the one written), a query or fragment (the
 * appended path would land inside it), credentials in the URL, control characters — would otherwise show up
 * later as a request that fails on every retry, without naming the variable.
 */

/** Anything below a space, DEL, and the C1 controls: never part of a URL an operator meant to write. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

const describeChar = (char: string): string => {
  if (char === "\n" || char === "\r") return "a line break"
  if (char === "\t") return "a tab"
  return `the control character U+${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`
}

/** `, got "…"` with the value cut to a length that fits one line. */
const got = (raw: string) => ` (got ${JSON.stringify(raw.length > 200 ? `${raw.slice(0, 200)}…` : raw)})`

/**
 * Why `raw` (the trimmed value of `variable`) is not a usable http(s) base URL, as one line naming the
 * variable; undefined when it is. `example` is shown when the text is not a URL at all.
 */
export const endpointUrlProblem = (variable: string, raw: string, example: string): string | undefined => {
  const control = CONTROL.exec(raw)
  if (control !== null) return `${variable} contains ${describeChar(control[0])} at character ${control.index + 1}; set it to one URL on one line${got(raw)}`
  if (/\s/.test(raw)) return `${variable} contains a space; set it to one URL such as ${example}${got(raw)}`
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return `${variable} must be an http(s) URL such as ${example}${got(raw)}`
  }
  if ((url.protocol !== "https:" && url.protocol !== "http:") || url.hostname === "") return `${variable} must be an http(s) URL such as ${example}${got(raw)}`
  if (url.username !== "" || url.password !== "") return `${variable} must not carry a user name or password (the credentials have their own variables)${got(raw.replace(/\/\/[^@/]*@/, "//…@"))}`
  // Checked on the text as written: the parsed URL has its `.` and `..` segments resolved already.
  const path = raw.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, "").split(/[?#]/)[0] ?? ""
  if (path.split("/").some((segment) => segment === "." || segment === ".." || /^%2e(%2e)?$/i.test(segment) || /^(\.%2e|%2e\.)$/i.test(segment))) {
    return `${variable} must not contain "." or ".." path segments${got(raw)}`
  }
  if (raw.includes("?")) return `${variable} must not contain a query ("?…"): request paths are appended to it${got(raw)}`
  if (raw.includes("#")) return `${variable} must not contain a fragment ("#…"): request paths are appended to it${got(raw)}`
  return undefined
}

/**
 * The S3 endpoint the AWS SDK will use (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`; neither: AWS
 * itself), checked by the same rules; the SDK's own complaint about a bad one (`ERR_INVALID_URL`) names no
 * variable and reads as an unreachable store, which the daemon would retry forever.
 */
export const s3EndpointProblem = (env: Readonly<Record<string, string | undefined>>): string | undefined => {
  const variable = (env["AWS_ENDPOINT_URL_S3"] ?? "") !== "" ? "AWS_ENDPOINT_URL_S3" : (env["AWS_ENDPOINT_URL"] ?? "") !== "" ? "AWS_ENDPOINT_URL" : undefined
  if (variable === undefined) return undefined
  // Not trimmed: the SDK is given the value exactly as set.
  return endpointUrlProblem(variable, env[variable] ?? "", "http://127.0.0.1:8333")
}
