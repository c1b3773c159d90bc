import { fencingWasTested, twoShardChaosSeeds } from "./suite.js"

twoShardChaosSeeds(7, 7)
fencingWasTested()
