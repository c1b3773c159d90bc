/**
 * Changing a VM's config: `POST`/`PUT …/config` (settings, deletions, tags, a `<storage>:cloudinit` drive
 * allocated on the fly, the boot order checked) and `PUT …/resize` (grow only, under the storage lock).
 */
import type { Params } from "../schema.js"
import { PVE_SECONDS } from "../latency.js"
import {
  configDigest,
  DRIVE_KEY,
  formatDrive,
  formatSize,
  isCdrom,
  MiB,
  normaliseTags,
  parseDrive,
  parseSize,
  sortConfig,
  volumeStorage
} from "./config.js"
import type { SimCore } from "./core.js"
import { type CallContext, fail, paramError, PveHttpError, type SimVm, TaskFailed } from "./state.js"
import { startTask } from "./tasks.js"

/**
 * `POST …/config` (async, `qmconfig` worker) and `PUT …/config` (sync). Early checks run in the handler;
 * the config lock is taken in the worker for POST (a timeout fails the task) and in the handler for PUT
 * (a timeout is a 500 after holding a pveproxy worker for up to 10 s).
 */
export const updateConfig = async (core: SimCore, p: Params, ctx: CallContext, sync: boolean): Promise<string | null> => {
  const node = core.onlineNode(p)
  const vmid = Number(p["vmid"])
  const meta = new Set(["node", "vmid", "digest", "delete", "skiplock", "background_delay", "revert", "force"])
  const settings = Object.entries(p).filter(([key]) => !meta.has(key))
  const deletions = (p["delete"] ?? "").split(/[,;\s]+/).filter((k) => k !== "").map((k) => (k === "cdrom" ? "ide2" : k))
  if (settings.length === 0 && deletions.length === 0 && p["revert"] === undefined) throw fail("no options specified")
  for (const key of deletions) {
    if (p[key] !== undefined) throw paramError({ delete: `you can't use '-${key}' and -delete ${key}' at the same time` })
    if (core.options.configSpecs[key] === undefined && core.options.configSpecs[key.replace(/\d+$/, "[n]")] === undefined) {
      throw paramError({ delete: `unknown option '${key}'` })
    }
  }
  for (const [key, value] of settings) {
    if (!DRIVE_KEY.test(key)) continue
    const drive = parseDrive(value)
    const storageId = volumeStorage(drive.file)
    if (storageId === undefined) continue
    core.storage(storageId)
    const volname = drive.file.slice(drive.file.indexOf(":") + 1)
    if (volname.startsWith("iso/") && drive.opts.get("media") !== "cdrom") {
      throw paramError({ [key]: "explicit 'media=cdrom' is required for iso images" })
    }
  }
  const loadAndCheck = (): SimVm => {
    const vm = core.vmOn(node.name, vmid)
    if (p["digest"] !== undefined && p["digest"] !== configDigest(vm.config)) {
      throw fail("checksum mismatch (file change by other user?)")
    }
    core.checkLock(vm)
    return vm
  }
  loadAndCheck()
  const apply = () => {
    const vm = loadAndCheck()
    const next = new Map(vm.config)
    for (const [key, value] of settings) {
      if (key === "tags") {
        const tags = normaliseTags(value)
        if (tags === "") next.delete(key)
        else next.set(key, tags)
        continue
      }
      const drive = DRIVE_KEY.test(key) ? parseDrive(value) : undefined
      if (drive !== undefined && /^[^:]+:cloudinit$/.test(drive.file)) {
        // `<storage>:cloudinit` asks PVE to allocate the VM's cloud-init drive.
        const storageId = volumeStorage(drive.file) ?? ""
        const volid = `${storageId}:vm-${vmid}-cloudinit`
        if (core.volume(node.name, volid) === undefined) {
          core.addVolume(node.name, { volid, storage: storageId, content: "images", format: "raw", size: 4 * MiB, vmid })
        }
        next.set(key, formatDrive(volid, new Map([["media", "cdrom"]])))
        continue
      }
      next.set(key, value)
    }
    for (const key of deletions) next.delete(key)
    const boot = p["boot"]
    const order = boot === undefined ? undefined : /(?:^|,)order=([^,]+)/.exec(boot)?.[1]
    if (order !== undefined) {
      for (const device of order.split(/[;,\s]+/)) {
        if (!next.has(device)) throw fail(`invalid bootorder: device '${device}' does not exist'`)
      }
    }
    vm.config = sortConfig(next)
  }
  if (sync) {
    const release = await core.lockInHandler(core.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
    try {
      apply()
    } finally {
      release()
    }
    return null
  }
  const task = startTask(core, node.name, "qmconfig", String(vmid), ctx.user, vmid, async (run) => {
    const release = await run.lock(core.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
    try {
      run.log.push(`update VM ${vmid}: ${settings.map(([k, v]) => `-${k} ${v}`).join(" ")}`)
      await run.step(core.jittered(PVE_SECONDS.config))
      try {
        apply()
      } catch (error) {
        throw error instanceof PveHttpError ? new TaskFailed({ message: error.message }) : error
      }
    } finally {
      release()
    }
  })
  return task.upid
}

/** Everything of `PUT …/resize` — even the VM lookup — runs in its `resize` worker (qemu-server ≥ 8). */
export const resize = async (core: SimCore, p: Params, ctx: CallContext): Promise<string> => {
  const node = core.onlineNode(p)
  const vmid = Number(p["vmid"])
  const disk = p["disk"] ?? ""
  const sizeText = p["size"] ?? ""
  const task = startTask(core, node.name, "resize", String(vmid), ctx.user, vmid, async (run) => {
    const release = await run.lock(core.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
    try {
      const vm = core.taskVm(node.name, vmid)
      if (p["digest"] !== undefined && p["digest"] !== configDigest(vm.config)) {
        throw new TaskFailed({ message: "checksum mismatch (file change by other user?)" })
      }
      core.checkLockInTask(vm)
      const value = vm.config.get(disk)
      if (value === undefined) throw new TaskFailed({ message: `disk '${disk}' does not exist` })
      if (isCdrom(value)) throw new TaskFailed({ message: "you can't resize a cdrom" })
      const drive = parseDrive(value)
      const volume = core.volume(node.name, drive.file)
      if (volume === undefined) throw new TaskFailed({ message: `Could not determine current size of volume '${drive.file}'` })
      const current = volume.size
      const plus = sizeText.startsWith("+")
      const amount = parseSize(plus ? sizeText.slice(1) : sizeText) ?? 0
      const wanted = plus ? current + amount : amount
      if (wanted < current) throw new TaskFailed({ message: "shrinking disks is not supported" })
      if (wanted === current) return
      const releaseStorage = await run.lock(core.storageLock(node.name, volume.storage), PVE_SECONDS.lockTimeout)
      try {
        await run.step(core.jittered(PVE_SECONDS.resize))
      } finally {
        releaseStorage()
      }
      volume.size = wanted
      drive.opts.set("size", formatSize(wanted))
      vm.config.set(disk, formatDrive(drive.file, drive.opts))
      run.log.push(`resized ${disk} to ${formatSize(wanted)}`)
    } finally {
      release()
    }
  })
  return task.upid
}
