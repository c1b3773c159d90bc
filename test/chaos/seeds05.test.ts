import { fencingWasTested, chaosSeeds } from "./suite.js"

chaosSeeds(101, 25)
chaosSeeds(1020, 5)
fencingWasTested()
