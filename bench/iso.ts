/** Cost of building the cloud-init seed ISO (4 KiB and 1 MiB user-data) and of reading it back. */
import { buildIso, readIsoFiles } from "../src/domain/iso9660.js"

const measure = (label: string, iterations: number, run: () => void) => {
  for (let i = 0; i < Math.min(20, iterations); i++) run()
  const samples: Array<number> = []
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) {
    const t0 = process.hrtime.bigint()
    run()
    samples.push(Number(process.hrtime.bigint() - t0) / 1000)
  }
  const totalUs = Number(process.hrtime.bigint() - start) / 1000
  samples.sort((a, b) => a - b)
  const pct = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] ?? 0
  console.log(
    `${label.padEnd(36)} ${(iterations / (totalUs / 1e6)).toFixed(1).padStart(10)} ops/s  ` +
      `${(totalUs / iterations).toFixed(1).padStart(10)} µs/op  p50 ${pct(0.5).toFixed(1)} µs  p99 ${pct(0.99).toFixed(1)} µs`
  )
}

const metaData = new TextEncoder().encode("instance-id: web06dx9xy919t3v9kzd2xdsyzb3g\nlocal-hostname: web06dx9xy919t3v9kzd2xdsyzb3g\n")
for (const [label, size, iterations] of [["4 KiB", 4096, 5000], ["1 MiB", 1024 * 1024, 300]] as const) {
  const userData = new Uint8Array(size).map((_, i) => (i * 31) & 0xff)
  const files = [{ name: "user-data", data: userData }, { name: "meta-data", data: metaData }]
  let image: Uint8Array = new Uint8Array(0)
  measure(`build, ${label} user-data`, iterations, () => {
    image = buildIso(files, { volumeId: "cidata" })
  })
  measure(`read, ${label} user-data`, iterations, () => {
    readIsoFiles(image)
  })
  console.log(`  (image size ${image.length} bytes)`)
}
