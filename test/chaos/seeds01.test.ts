import { fencingWasTested, chaosSeeds } from "./suite.js"

chaosSeeds(1, 25)
chaosSeeds(1000, 5)
fencingWasTested()
