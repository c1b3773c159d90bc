/**
 * The one entry point to @peculiar/x509. The library resolves its algorithm providers through tsyringe,
 * which refuses to load unless a Reflect metadata API exists (normally the `reflect-metadata` polyfill).
 * Its own classes carry no constructor metadata, so the four functions tsyringe calls, backed by a WeakMap,
 * are all it needs: installing them (only when absent) before the import avoids a dependency and leaves a
 * real polyfill loaded elsewhere untouched. Import X.509 from here, never from the package directly.
 */
import "./reflectMetadata.js"
export * from "@peculiar/x509"
