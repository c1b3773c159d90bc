import { fencingWasTested, registrationChaosSeeds } from "./suite.js"

registrationChaosSeeds(10, 10)
fencingWasTested()
