import { registrationChaosSeeds } from "./suite.js"

registrationChaosSeeds(0, 10)
