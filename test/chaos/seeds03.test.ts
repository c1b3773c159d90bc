import { fencingWasTested, chaosSeeds } from "./suite.js"

chaosSeeds(51, 25)
chaosSeeds(1010, 5)
fencingWasTested()
