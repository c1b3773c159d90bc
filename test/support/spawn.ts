/**
 * Starts one of our compiled commands (`bin/<name>.js` → `dist/`) as a real process, asynchronously, so
 * the vitest worker's event loop keeps answering while it runs. For the few tests per command that check
 * the wire: exit status, stdout/stderr of a real process, signals.
 */
import { spawn } from "node:child_process"

export interface ProcessResult {
  readonly status: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface SpawnOptions {
  readonly env?: NodeJS.ProcessEnv
  /** Kill (SIGKILL) the process after this many milliseconds; default 30 s. */
  readonly timeoutMs?: number
  readonly input?: string
}

export const runProcess = (file: string, args: ReadonlyArray<string>, options: SpawnOptions = {}) =>
  new Promise<ProcessResult>((resolve, reject) => {
    const child = spawn(file, [...args], {
      env: options.env ?? { ...process.env, NO_COLOR: "1" },
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000)
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    if (options.input !== undefined && child.stdin !== null) child.stdin.end(options.input)
    child.on("error", (error) => { clearTimeout(timer); reject(error) })
    child.on("close", (status, signal) => { clearTimeout(timer); resolve({ status, signal, stdout, stderr }) })
  })

/** `runBin("nstance-admin", ["--version"])`: the compiled command, as an operator runs it. */
export const runBin = (name: "nstance-admin" | "nstance-server" | "nstance-pve-sim", args: ReadonlyArray<string>, options: SpawnOptions = {}) =>
  runProcess(process.execPath, [`bin/${name}.js`, ...args], options)

/**
 * Collects the `message` of every JSON log line a process writes to stdout (lines that are not JSON go
 * to `notJson`); `flush` takes in a last line without a newline once the process has ended.
 */
export const collectJsonMessages = (stdout: NodeJS.ReadableStream | null, onLine: (messages: ReadonlyArray<string>) => void = () => {}) => {
  const messages: Array<string> = []
  const notJson: Array<string> = []
  let buffered = ""
  const take = (line: string) => {
    try {
      messages.push((JSON.parse(line) as { message: string }).message)
    } catch {
      notJson.push(line)
    }
  }
  stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString()
    const lines = buffered.split("\n")
    buffered = lines.pop() ?? ""
    for (const line of lines) take(line)
    onLine(messages)
  })
  return { messages, notJson, flush: () => { if (buffered !== "") take(buffered); buffered = "" } }
}

/** `openssl …`'s stdout, run asynchronously (a synchronous child would stall the worker); a non-zero exit rejects with its stderr. */
export const opensslOutput = async (args: ReadonlyArray<string>): Promise<string> => {
  const result = await runProcess("openssl", args)
  if (result.status !== 0) throw new Error(`openssl ${args.join(" ")} exited ${result.status ?? result.signal}: ${result.stderr.trim()}`)
  return result.stdout
}
