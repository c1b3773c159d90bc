import { fencingWasTested, twoShardChaosSeeds } from "./suite.js"

twoShardChaosSeeds(14, 6)
fencingWasTested()
