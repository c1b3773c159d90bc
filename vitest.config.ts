import { defineConfig } from "vitest/config"

// Every test file but one shares its worker process and module cache: the forks pool reuses its two
// processes, which saves re-importing Effect, the platform and undici ~150 times (minutes on two cores).
// (Only the pool's own `poolOptions.forks.isolate` decides whether a process is reused; a project's
// `isolate` alone does not.) The file below reads Effect's global metric registry, which every other file
// in a process adds to: it runs in a worker thread of its own, a fresh realm.
const isolated = ["test/ops/daemonMetrics.test.ts"]

export default defineConfig({
  test: {
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores on CI: keep parallelism modest so slow real-server suites do not starve each other.
    poolOptions: { forks: { maxForks: 2, minForks: 1, isolate: false }, threads: { maxThreads: 1, minThreads: 1, isolate: true } },
    pool: "forks",
    projects: [
      { extends: true, test: { name: "shared", include: ["test/**/*.test.ts"], exclude: isolated, isolate: false } },
      { extends: true, test: { name: "isolated", include: isolated, pool: "threads" } }
    ]
  }
})
