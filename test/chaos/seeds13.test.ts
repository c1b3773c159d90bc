import { registrationChaosSeeds } from "./suite.js"

registrationChaosSeeds(10, 10)
