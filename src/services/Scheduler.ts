/**
 * Chooses the node a new VM is created on. The contract only; the TOPSIS implementation is in
 * `src/layers/SchedulerTopsis.ts`, the pure ranking in `src/domain/placement.ts`.
 */
import { Context, Effect } from "effect"
import type { Demand, NodeResources, Placement } from "../domain/placement.js"
import { NoPlacement } from "../domain/placement.js"

export { NoPlacement }
export type { Demand, NodeResources, Placement }

export class Scheduler extends Context.Tag("nstance/Scheduler")<Scheduler, {
  /** Best node for one VM from one `/cluster/resources?type=node` answer, with every node's evaluation. */
  readonly place: (nodes: ReadonlyArray<NodeResources>, demand: Demand) => Effect.Effect<Placement, NoPlacement>
  /**
   * Nodes for `count` VMs created together; each choice charges the node with the VM before the next, so a
   * burst spreads. Fails when not all fit (`NoPlacement.placed` holds those that did).
   */
  readonly placeMany: (
    nodes: ReadonlyArray<NodeResources>,
    demand: Demand,
    count: number
  ) => Effect.Effect<ReadonlyArray<Placement>, NoPlacement>
}>() {}
