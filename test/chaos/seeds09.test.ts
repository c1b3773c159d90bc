import { fencingWasTested, twoShardChaosSeeds } from "./suite.js"

twoShardChaosSeeds(0, 7)
fencingWasTested()
