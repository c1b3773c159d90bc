import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { backend } from "./harness.js"
import { layerSuite, suite } from "./leaseSuite.js"

suite(backend("memory", makeMemoryStore), 180_000)
layerSuite()
