/**
 * The real programs some suites run against instead of a stand-in: an S3 server (Ceph RGW), the ISO tools
 * cloud-init users rely on, the deploy scripts' checkers, and Prometheus' own text parser. Each is a Debian
 * package. The global setup probes them once, asynchronously (test/support/globalSetup.ts); on a machine that
 * lacks one, the suites that need it are skipped (`skipWithout`, test/support/skipWithout.ts) and the run
 * says so once, with the command that installs it. Under `CI=true` (as `.ci/run` sets) a missing
 * component fails the run instead: CI must never pass on skipped real-component checks.
 */
import { execFile } from "node:child_process"
import { accessSync, constants, existsSync } from "node:fs"
import { delimiter, join } from "node:path"

export interface RealComponent {
  /** Short name used by the suites: `needs("s3")`. */
  readonly name: "s3" | "iso-tools" | "deploy-tools" | "prometheus-parser" | "network-namespaces"
  /** What the suites check with it, for the skip line. */
  readonly checks: string
  /** The one command that installs what is missing. */
  readonly install: string
  /** Undefined when present, else what is missing (asynchronous: a probe must never block a worker). */
  readonly missing: () => Promise<string | undefined>
}

const isExecutable = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

// Root's PATH has the sbin directories and a user's may not, yet a test may call e.g. keepalived by its path.
const SEARCHED = [...(process.env["PATH"] ?? "").split(delimiter).filter((dir) => dir !== ""), "/usr/sbin", "/sbin"]

const missingPrograms = (programs: ReadonlyArray<string>): string | undefined => {
  const absent = programs.filter((program) => !SEARCHED.some((dir) => isExecutable(join(dir, program))))
  return absent.length === 0 ? undefined : absent.join(", ")
}

/** Debian installs python3-prometheus-client for the system interpreter; a python3 earlier on PATH may lack it. */
export const SYSTEM_PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"

const S3_VARIABLES = ["AWS_ENDPOINT_URL", "S3_TEST_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] as const

export const REAL_COMPONENTS: ReadonlyArray<RealComponent> = [
  {
    name: "s3",
    checks: "the S3 store, lease, event-log and CLI suites on a real S3 server (Ceph RGW)",
    install: "sudo apt-get install ceph-mon ceph-osd radosgw ceph-common",
    missing: async () => {
      // A server of the user's own (the four variables set) serves as well as the one we start.
      if (S3_VARIABLES.every((name) => (process.env[name] ?? "") !== "")) return undefined
      const programs = missingPrograms(["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph-authtool", "monmaptool", "ceph"])
      return programs === undefined ? undefined : `${programs} (and ${S3_VARIABLES.join(", ")} are not all set)`
    }
  },
  {
    name: "iso-tools",
    checks: "our cloud-init ISOs read by isoinfo, xorriso and blkid",
    install: "sudo apt-get install genisoimage xorriso util-linux",
    missing: async () => missingPrograms(["isoinfo", "genisoimage", "xorriso", "blkid"])
  },
  {
    name: "deploy-tools",
    checks: "the deploy scripts under shellcheck and their bats suites (with keepalived -t)",
    install: "sudo apt-get install shellcheck bats keepalived",
    missing: async () => missingPrograms(["shellcheck", "bats", "keepalived"])
  },
  {
    name: "prometheus-parser",
    checks: "/metrics read by Prometheus' own text parser",
    install: "sudo apt-get install python3-prometheus-client",
    missing: () =>
      new Promise((resolve) => {
        execFile(SYSTEM_PYTHON, ["-c", "import prometheus_client.parser"], { timeout: 20_000 }, (error) =>
          resolve(error === null ? undefined : `${SYSTEM_PYTHON} with prometheus_client`))
      })
  },
  {
    name: "network-namespaces",
    checks: "the keepalived leader check on two replicas in network namespaces of their own",
    install: "run the suite as root (it creates network namespaces with ip netns; sudo apt-get install iproute2 curl)",
    missing: () => namespaceProbe()
  }
]

/** Whether this process may create a network namespace: creates one and removes it again. */
const namespaceProbe = (): Promise<string | undefined> => {
  const programs = missingPrograms(["ip", "curl"])
  if (programs !== undefined) return Promise.resolve(programs)
  const name = `nstance-probe-${process.pid}`
  return new Promise((resolve) => {
    execFile("ip", ["netns", "add", name], { timeout: 10_000 }, (error) => {
      if (error !== null) return resolve(`the right to create network namespaces (uid ${process.getuid?.() ?? "?"})`)
      execFile("ip", ["netns", "del", name], { timeout: 10_000 }, () => resolve(undefined))
    })
  })
}

/** Probes every component (in the global setup, once per run). */
export const probeRealComponents = async (): Promise<Record<string, string>> => {
  const found: Record<string, string> = {}
  for (const c of REAL_COMPONENTS) {
    const what = await c.missing()
    if (what !== undefined) found[c.name] = what
  }
  return found
}

export const isCi = (): boolean => (process.env["CI"] ?? "") !== "" && process.env["CI"] !== "false"

/** The one line the run prints for a missing component. */
export const missingLine = (c: RealComponent, what: string): string =>
  `skipped: ${c.checks} — missing ${what}; install with: ${c.install}`
