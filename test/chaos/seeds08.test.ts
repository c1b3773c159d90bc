import { fencingWasTested, chaosSeeds } from "./suite.js"

chaosSeeds(176, 25)
chaosSeeds(1035, 5)
fencingWasTested()
