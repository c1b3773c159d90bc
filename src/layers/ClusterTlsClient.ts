/**
 * The HTTP client every nstance client speaks through (nstance-admin, nstance-agent, the simulator's
 * guests): HTTPS, TLS 1.3 only, trusting only the cluster CA — not the system's store — so a credential
 * (the admin token, a registration nonce) goes to no server the cluster CA did not sign, whatever address a
 * `NotLeader` answer names.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { Layer } from "effect"

export const ClusterTlsClient = (caPem: string) =>
  NodeHttpClient.layerWithoutAgent.pipe(Layer.provide(NodeHttpClient.makeAgentLayer({ ca: caPem, minVersion: "TLSv1.3", maxVersion: "TLSv1.3" })))
