import { twoShardChaosSeeds } from "./suite.js"

twoShardChaosSeeds(14, 6)
