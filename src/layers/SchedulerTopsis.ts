/**
 * Scheduler backed by TOPSIS over free memory (60 %) and free CPU (40 %), excluding offline nodes and nodes
 * without room for the VM. Logs each decision with its score so placements can be explained afterwards.
 */
import { Effect, Layer } from "effect"
import { type Demand, type NodeResources, NoPlacement, placeOne, planPlacements } from "../domain/placement.js"
import { Scheduler } from "../services/Scheduler.js"

export const makeSchedulerTopsis = Scheduler.of({
  place: Effect.fn("Scheduler.place")(function* (nodes: ReadonlyArray<NodeResources>, demand: Demand) {
    const placement = placeOne(nodes, demand)
    if (placement instanceof NoPlacement) return yield* placement
    yield* Effect.annotateCurrentSpan({ "placement.node": placement.node, "placement.score": placement.score })
    yield* Effect.logDebug("node chosen").pipe(
      Effect.annotateLogs({ node: placement.node, score: placement.score, candidates: placement.ranking.length })
    )
    return placement
  }),
  placeMany: Effect.fn("Scheduler.placeMany")(function* (nodes: ReadonlyArray<NodeResources>, demand: Demand, count: number) {
    const placements = planPlacements(nodes, demand, count)
    if (placements instanceof NoPlacement) return yield* placements
    yield* Effect.logDebug("nodes chosen").pipe(Effect.annotateLogs({ nodes: placements.map((p) => p.node).join(",") }))
    return placements
  })
})

export const SchedulerTopsis = Layer.succeed(Scheduler, makeSchedulerTopsis)
