import { twoShardChaosSeeds } from "./suite.js"

twoShardChaosSeeds(0, 7)
