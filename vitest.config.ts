import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores on CI. Three workers: much of the suite waits on real time (subprocesses, timeouts, real
    // servers) rather than computing, so a third keeps the cores busy; more would starve the suites that
    // measure real-time behaviour.
    poolOptions: { forks: { maxForks: 3, minForks: 1 } },
    pool: "forks"
  }
})
