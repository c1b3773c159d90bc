import { fencingWasTested, chaosSeeds } from "./suite.js"

chaosSeeds(126, 25)
chaosSeeds(1025, 5)
fencingWasTested()
