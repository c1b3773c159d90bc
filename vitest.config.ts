import { defineConfig } from "vitest/config"

// Test files that read process-wide state (Effect's global metric registry, the process's open descriptors,
// signal handlers) run in a fresh module graph each; every other file shares its worker's module cache, which
// saves re-importing Effect, the platform and undici ~150 times (minutes of the suite on two cores).
const isolated = [
  "test/ops/daemonMetrics.test.ts",
  "test/ops/flood.test.ts",
  "test/shard/daemonSignals.test.ts"
]

export default defineConfig({
  test: {
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores on CI: keep parallelism modest so slow real-server suites do not starve each other.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    pool: "forks",
    projects: [
      { extends: true, test: { name: "shared", include: ["test/**/*.test.ts"], exclude: isolated, isolate: false } },
      { extends: true, test: { name: "isolated", include: isolated } }
    ]
  }
})
