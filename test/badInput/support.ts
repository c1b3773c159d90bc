/**
 * Shared helpers of the bad-input tests (issue 16): the three commands in-process, a scratch directory,
 * and the "nothing was written" check every case ends with.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { afterAll } from "@effect/vitest"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { serverCommand } from "../../src/cli/server.js"
import { simCommand } from "../../src/sim/command.js"
import { type InProcessOptions, runCommand } from "../support/cli.js"

export const TOKEN = { PROXMOX_TOKEN_ID: "nstance@pve!nstance-token", PROXMOX_TOKEN_SECRET: "secret" }

/** The run's PROXMOX_* variables removed, then `env` applied. */
export const withoutProxmox = (env: Readonly<Record<string, string>> = {}): Record<string, string | undefined> => ({
  ...Object.fromEntries(Object.keys(process.env).filter((key) => key.startsWith("PROXMOX_")).map((key) => [key, undefined])),
  ...env
})

export const admin = (args: ReadonlyArray<string>, options: InProcessOptions = {}) =>
  runCommand(adminCommand, "nstance-admin", args, options)
export const server = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}, options: InProcessOptions = {}) =>
  runCommand(serverCommand, "nstance-server", args, { ...options, env: withoutProxmox(env) })
export const sim = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  runCommand(simCommand, "nstance-pve-sim", args, { env: withoutProxmox(env), interruptAfterMs: 5_000 })

/** A fresh directory removed after the file's tests. */
export const scratch = (name: string) => {
  const dir = mkdtempSync(join(tmpdir(), `nstance-bad-${name}-`))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export const mkfifo = async (path: string) => {
  await promisify(execFile)("mkfifo", [path])
  return path
}

/** Every file under `dir`, relative, sorted ([] when it does not exist). */
export const filesUnder = (dir: string): ReadonlyArray<string> =>
  existsSync(dir) ? readdirSync(dir, { recursive: true, encoding: "utf8" }).sort() : []

export const lines = (text: string) => text.trimEnd().split("\n")

export { closedPort } from "../support/net.js"
