/** Cost of building the cloud-init seed ISO (4 KiB and 1 MiB user-data) and of reading it back. */
import { buildIso, readIsoFiles } from "../src/domain/iso9660.js"
import { measureSync } from "./lib/stats.js"

const metaData = new TextEncoder().encode("instance-id: web06dx9xy919t3v9kzd2xdsyzb3g\nlocal-hostname: web06dx9xy919t3v9kzd2xdsyzb3g\n")
for (const [label, size, iterations] of [["4 KiB", 4096, 5000], ["1 MiB", 1024 * 1024, 300]] as const) {
  const userData = new Uint8Array(size).map((_, i) => (i * 31) & 0xff)
  const files = [{ name: "user-data", data: userData }, { name: "meta-data", data: metaData }]
  let image: Uint8Array = new Uint8Array(0)
  measureSync(`build, ${label} user-data`, iterations, () => {
    image = buildIso(files, { volumeId: "cidata" })
  })
  measureSync(`read, ${label} user-data`, iterations, () => {
    readIsoFiles(image)
  })
  console.log(`  (image size ${image.length} bytes)`)
}
