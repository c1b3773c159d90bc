import { fencingWasTested, chaosSeeds } from "./suite.js"

chaosSeeds(26, 25)
chaosSeeds(1005, 5)
fencingWasTested()
