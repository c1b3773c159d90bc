import { twoShardChaosSeeds } from "./suite.js"

twoShardChaosSeeds(7, 7)
