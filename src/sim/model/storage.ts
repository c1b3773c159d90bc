/**
 * Storages and their content: the storage list with usage, volume listings and details, deleting a volume
 * (an `imgdel` task; a linked clone's base refuses) and uploading an ISO or template (an `imgcopy` task,
 * with PVE's file-name rules and optional checksum).
 */
import { createHash } from "node:crypto"
import type { Params } from "../schema.js"
import { PVE_SECONDS } from "../latency.js"
import { MiB, volumeStorage } from "./config.js"
import type { SimCore } from "./core.js"
import { type CallContext, fail, type Handler, paramError, TaskFailed } from "./state.js"
import { startTask } from "./tasks.js"

/** Storage types backed by a file system, which take uploads (pve-storage's `path`-based plugins). */
const FILE_STORAGE_TYPES = new Set(["dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs"])

const volidOf = (p: Params): string => {
  const volume = p["volume"] ?? ""
  const storage = p["storage"]
  return volume.includes(":") || storage === undefined ? volume : `${storage}:${volume}`
}

export const storageRoutes = (core: SimCore): Readonly<Record<string, Handler>> => ({
  "GET /nodes/{node}/storage": async (p) => {
    const node = core.onlineNode(p)
    const content = p["content"]?.split(/[,;\s]+/).filter((c) => c !== "")
    return [...core.storages.values()]
      // A storage configured for other nodes only is not listed on this one.
      .filter((s) => core.storageAvailableOn(node.name, s))
      .filter((s) => p["storage"] === undefined || s.id === p["storage"])
      .filter((s) => content === undefined || content.some((c) => s.content.includes(c)))
      .map((s) => {
        const used = core.volumesOn(node.name, s.id).reduce((sum, v) => sum + v.size, 0)
        return {
          storage: s.id, type: s.type, content: s.content.join(","), active: 1, enabled: 1, shared: s.shared ? 1 : 0,
          total: s.total, used, avail: s.total - used, used_fraction: used / s.total
        }
      })
  },

  "GET /nodes/{node}/storage/{storage}/content": async (p) => {
    const node = core.onlineNode(p)
    const s = core.storageOn(node.name, p["storage"] ?? "")
    return core.volumesOn(node.name, s.id)
      .filter((v) => p["content"] === undefined || v.content === p["content"])
      .filter((v) => p["vmid"] === undefined || v.vmid === Number(p["vmid"]))
      .map((v) => ({
        volid: v.volid, content: v.content, format: v.format, size: v.size, ctime: v.ctime,
        ...(v.vmid === undefined ? {} : { vmid: v.vmid }),
        ...(v.parent === undefined ? {} : { parent: v.parent }),
        ...(v.content === "images" ? { used: 0 } : {})
      }))
  },

  "GET /nodes/{node}/storage/{storage}/content/{volume}": async (p) => {
    const node = core.onlineNode(p)
    const volid = volidOf(p)
    const v = core.volume(node.name, volid)
    if (v === undefined) throw fail(`volume_size_info on '${volid}' failed - no format`)
    const path = v.content === "iso"
      ? `/var/lib/vz/template/iso/${volid.slice(volid.indexOf("/") + 1)}`
      : `/dev/pve/${volid.slice(volid.indexOf(":") + 1)}`
    return { format: v.format, path, size: v.size, used: v.content === "iso" ? v.size : 0, protected: 0 }
  },

  "DELETE /nodes/{node}/storage/{storage}/content/{volume}": async (p, ctx) => {
    const node = core.onlineNode(p)
    const volid = volidOf(p)
    const storageId = volumeStorage(volid) ?? ""
    core.storage(storageId)
    const owner = core.volume(node.name, volid)?.vmid
    // PVE does not look before it forks: a missing volume is a warning in the task, not an error.
    const task = startTask(core, node.name, "imgdel", owner === undefined ? storageId : `${owner}@${storageId}`, ctx.user, owner, async (run) => {
      const release = await run.lock(core.storageLock(node.name, storageId), PVE_SECONDS.lockTimeout)
      try {
        await run.step(core.jittered(PVE_SECONDS.deleteVolume))
        const v = core.volume(node.name, volid)
        if (v === undefined) {
          run.log.push(`WARN: disk image '${volid}' does not exist`)
          run.warnings++
        } else {
          if (v.parent === undefined && [...core.volumes.values()].some((other) => other.parent === volid)) {
            throw new TaskFailed({ message: `base volume '${volid}' is still in use by linked cloned` })
          }
          core.removeVolume(node.name, volid)
        }
        run.log.push(`Removed volume '${volid}'`)
      } finally {
        release()
      }
    })
    const delay = p["delay"]
    if (delay === undefined) return task.upid
    // With `delay`, PVE waits that long and answers null if the task finished well (its error if not).
    const finished = await Promise.race([task.done.then(() => true), core.time.sleep(core.ms(Number(delay))).then(() => false)])
    if (!finished) return task.upid
    if (task.exitstatus !== "OK" && !(task.exitstatus ?? "").startsWith("WARNINGS")) throw fail(task.exitstatus ?? "unknown error")
    return null
  },

  "POST /nodes/{node}/storage/{storage}/upload": async (p, ctx) => upload(core, p, ctx)
})

/** Called by the HTTP layer with the file part already read; `filename` is the part's file name. */
const upload = async (core: SimCore, p: Params, ctx: CallContext): Promise<string> => {
  const node = core.onlineNode(p)
  const storageId = p["storage"] ?? ""
  const s = core.storageOn(node.name, storageId)
  // Uploads go to a directory, so block storages (lvmthin, rbd) cannot take them at all.
  if (!FILE_STORAGE_TYPES.has(s.type)) throw fail(`can't upload to storage type '${s.type}'`)
  const content = p["content"] ?? ""
  // PVE normalises the name: anything outside [A-Za-z0-9_.-] becomes an underscore.
  const filename = (p["filename"] ?? "").replace(/\n$/, "").replace(/^.*[/\\]/, "").replace(/[^A-Za-z0-9_.-]/g, "_")
  if (content === "iso" && !/[^/]+\.(?:iso|img)$/i.test(filename)) throw paramError({ filename: "wrong file extension" })
  if (content === "vztmpl" && !/[^/]+\.tar\.(?:gz|xz|zst|bz2)$/i.test(filename)) throw paramError({ filename: "wrong file extension" })
  if (content === "import") throw paramError({ filename: "invalid filename or wrong extension" })
  if (!s.content.includes(content)) throw fail(`storage '${storageId}' does not support '${content}' content`)
  const data = core.uploads.get(p["tmpfilename"] ?? "")
  if (data === undefined) throw fail("missing file upload (no 'filename' file part in the multipart body)")
  core.uploads.delete(p["tmpfilename"] ?? "")
  const checksum = p["checksum"]
  const algorithm = p["checksum-algorithm"]
  if ((checksum === undefined) !== (algorithm === undefined)) {
    throw paramError(checksum === undefined ? { checksum: "'checksum-algorithm' requires 'checksum'" } : { "checksum-algorithm": "'checksum' requires 'checksum-algorithm'" })
  }
  const volid = `${storageId}:${content}/${filename}`
  const task = startTask(core, node.name, "imgcopy", "", ctx.user, undefined, async (run) => {
    run.log.push(`starting file import from: /var/tmp/pveupload-${createHash("md5").update(filename).digest("hex")}`)
    if (checksum !== undefined && algorithm !== undefined) {
      const got = createHash(algorithm).update(data).digest("hex")
      if (got.toLowerCase() !== checksum.toLowerCase()) throw new TaskFailed({ message: `checksum mismatch: got '${got}' != expect '${checksum}'` })
      run.log.push("calculating checksum...OK, checksum verified")
    }
    await run.step(core.jittered(PVE_SECONDS.uploadBase + PVE_SECONDS.uploadPerMiB * data.length / MiB))
    core.addVolume(node.name, { volid, storage: storageId, content, format: content === "iso" ? "iso" : "tgz", size: data.length, data })
    run.log.push(`target file: ${volid}`)
    run.log.push("finished file import successfully")
  })
  return task.upid
}
