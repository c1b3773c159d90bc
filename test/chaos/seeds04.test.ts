import { fencingWasTested, chaosSeeds } from "./suite.js"

chaosSeeds(76, 25)
chaosSeeds(1015, 5)
fencingWasTested()
