import { fencingWasTested, chaosSeeds } from "./suite.js"

chaosSeeds(151, 25)
chaosSeeds(1030, 5)
fencingWasTested()
