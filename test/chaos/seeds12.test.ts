import { fencingWasTested, registrationChaosSeeds } from "./suite.js"

registrationChaosSeeds(0, 10)
fencingWasTested()
