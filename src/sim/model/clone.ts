/**
 * `POST …/qemu/{vmid}/clone`: full and linked clones of templates and VMs, with qemu-server's split between
 * checks in the handler and work in the `qmclone` worker, and the clean-up of a clone that fails midway.
 */
import type { Params } from "../schema.js"
import { PVE_SECONDS } from "../latency.js"
import { DRIVE_KEY, formatDrive, formatSize, GiB, isCdrom, parseDrive, parseSize, sortConfig, volumeStorage } from "./config.js"
import type { SimCore } from "./core.js"
import { type CallContext, fail, paramError, type SimVm, TaskFailed, TaskKilled } from "./state.js"
import { startTask } from "./tasks.js"

/**
 * `POST …/clone` as qemu-server does it: early checks in the handler (500s), then a `qmclone` worker that
 * takes the source lock (shared unless running) and the new VMID's lock with a 1 s timeout, repeats the
 * checks, writes the `lock: clone` placeholder (which fails if the VMID exists on another node), copies
 * or links the disks (a full copy holding the storage lock) and finally writes the config.
 */
export const clone = async (core: SimCore, p: Params, ctx: CallContext): Promise<string> => {
  const node = core.onlineNode(p)
  const vmid = Number(p["vmid"])
  const newid = Number(p["newid"])
  let target = p["target"]
  if (target === node.name || target === "localhost") target = undefined
  // check_running: the first thing the handler does, with its own message for a missing VM.
  if (core.vms.get(vmid)?.node !== node.name) throw fail(`unable to find configuration file for VM ${vmid} on node '${node.name}'`)
  const running = core.vms.get(vmid)?.status === "running"
  cloneChecks(core, node.name, vmid, newid, target, p, running)
  const destNode = target ?? node.name
  const task = startTask(core, node.name, "qmclone", String(vmid), ctx.user, vmid, async (run) => {
    const releaseSource = await run.lock(core.vmLock(node.name, vmid), 1, !running)
    try {
      const releaseTarget = await run.lock(core.vmLock(node.name, newid), 1)
      try {
        const { source, full, drives } = cloneChecks(core, node.name, vmid, newid, target, p, running)
        run.log.push(`creating a clone of VM ${vmid} with ID ${newid}`)
        const elsewhere = core.vms.get(newid)
        if (elsewhere !== undefined) {
          // pmxcfs refuses a second config for a VMID that lives on another node.
          throw new TaskFailed({ message: `close (rename) atomic file '/etc/pve/nodes/${node.name}/qemu-server/${newid}.conf' failed: File exists` })
        }
        const placeholder: SimVm = {
          vmid: newid, node: node.name, status: "stopped", paused: false, startedAt: undefined, pid: undefined,
          createdAt: core.time.now(), config: new Map([["lock", "clone"]])
        }
        core.vms.set(newid, placeholder)
        const created: Array<string> = []
        try {
          await run.step(core.jittered(PVE_SECONDS.cloneSetup))
          const config = new Map<string, string>()
          for (const [key, value] of source.config) {
            // Like qemu-server, the template's tags and description come along (`description` given to the clone replaces it).
            if (["template", "lock", "name", "pool"].includes(key) || key.startsWith("unused")) continue
            if (/^net\d+$/.test(key)) {
              // Clones always get fresh MAC addresses.
              config.set(key, value.replace(/^(\w+)=([0-9A-Fa-f:]{17})/, (_m, model: string) => `${model}=${core.mac()}`))
            } else if (key === "smbios1") {
              config.set(key, value.replace(/uuid=[0-9a-f-]+/, `uuid=${core.uuid()}`))
            } else if (key === "vmgenid") {
              config.set(key, core.uuid())
            } else if (!drives.has(key)) {
              config.set(key, value)
            }
          }
          let diskIndex = 0
          for (const key of [...drives.keys()].sort()) {
            const value = drives.get(key) ?? ""
            const drive = parseDrive(value)
            const srcStorage = volumeStorage(drive.file) ?? ""
            const cloudinit = drive.file.includes("cloudinit")
            const destStorage = (full || cloudinit) ? p["storage"] ?? srcStorage : srcStorage
            const size = core.volume(node.name, drive.file)?.size ?? parseSize(drive.opts.get("size") ?? "") ?? 0
            if (cloudinit) {
              // A few MiB allocated in a moment: not worth modelling as storage-lock contention.
              await run.step(core.ms(PVE_SECONDS.storageOp))
              const volid = `${destStorage}:vm-${newid}-cloudinit`
              core.addVolume(node.name, { volid, storage: destStorage, content: "images", format: "raw", size, vmid: newid })
              created.push(volid)
              config.set(key, formatDrive(volid, drive.opts))
              continue
            }
            const release = await run.lock(core.storageLock(node.name, destStorage), PVE_SECONDS.lockTimeout)
            try {
              let volid: string
              if (full) {
                run.log.push(`drive mirror/copy ${drive.file} -> ${destStorage} (${formatSize(size)})`)
                // The copy holds the storage lock throughout: not jittered, so the lock-timeout relations hold.
                await run.step(core.ms(PVE_SECONDS.fullCopyPerGiB * size / GiB))
                volid = `${destStorage}:vm-${newid}-disk-${diskIndex++}`
                core.addVolume(node.name, { volid, storage: destStorage, content: "images", format: "raw", size, vmid: newid })
              } else {
                await run.step(core.ms(PVE_SECONDS.linkedSnapshot))
                volid = `${srcStorage}:${drive.file.slice(drive.file.indexOf(":") + 1)}/vm-${newid}-disk-${diskIndex++}`
                core.addVolume(node.name, { volid, storage: srcStorage, content: "images", format: "raw", size, vmid: newid, parent: drive.file })
              }
              created.push(volid)
              config.set(key, formatDrive(volid, drive.opts))
            } finally {
              release()
            }
          }
          config.set("name", p["name"] ?? `Copy-of-VM-${source.config.get("name") ?? vmid}`)
          if (p["description"] !== undefined && p["description"] !== "") config.set("description", p["description"])
          if (p["pool"] !== undefined) config.set("pool", p["pool"])
          placeholder.config = sortConfig(config)
          // With `target` the finished config is renamed into the target node's directory.
          placeholder.node = destNode
          run.log.push(`clone ${vmid} -> ${newid} finished`)
        } catch (error) {
          // A worker killed by a reboot cleans nothing up: the placeholder and the disks made so far stay.
          if (error instanceof TaskKilled) throw error
          for (const volid of created) core.removeVolume(node.name, volid)
          core.vms.delete(newid)
          throw new TaskFailed({ message: `clone failed: ${error instanceof Error ? error.message : String(error)}` })
        }
      } finally {
        releaseTarget()
      }
    } finally {
      releaseSource()
    }
  })
  return task.upid
}

/** qemu-server's `$load_and_check` for clone: run in the handler and again in the worker. */
const cloneChecks = (core: SimCore, node: string, vmid: number, newid: number, target: string | undefined, p: Params, running: boolean):
  { readonly source: SimVm; readonly full: boolean; readonly drives: ReadonlyMap<string, string> } => {
  if (target !== undefined && !core.nodes.has(target)) throw fail(`no such cluster node '${target}'`)
  const storageParam = p["storage"]
  if (storageParam !== undefined) {
    const s = core.storageOn(target ?? node, storageParam)
    if (!s.content.includes("images")) throw paramError({ storage: `storage '${storageParam}' does not support vm images` })
    if (target !== undefined && !s.shared) throw fail(`can't clone to non-shared storage '${storageParam}'`)
  }
  const online = [...core.nodes.values()].filter((n) => n.online).length
  if (online * 2 <= core.nodes.size) throw fail("cluster not ready - no quorum?")
  const source = core.vmOn(node, vmid)
  core.checkLock(source)
  if ((source.status === "running") !== running) throw fail("unexpected state change")
  const full = p["full"] === undefined ? !core.isTemplate(source) : p["full"] === "1"
  if (storageParam !== undefined && !full) throw fail("parameter 'storage' not allowed for linked clones")
  if (p["format"] !== undefined && !full) throw fail("parameter 'format' not allowed for linked clones")
  const drives = new Map<string, string>()
  for (const [key, value] of source.config) {
    if (!DRIVE_KEY.test(key) || key.startsWith("unused")) continue
    const drive = parseDrive(value)
    if (isCdrom(value) && !drive.file.includes("cloudinit")) continue
    drives.set(key, value)
  }
  // A VM can go to another node only when every volume it has (and the target storage) is shared.
  const shared = [...drives.values()].every((value) => core.storages.get(volumeStorage(parseDrive(value).file) ?? "")?.shared === true) &&
    (storageParam === undefined || core.storage(storageParam).shared)
  if (target !== undefined && !shared) throw fail(`can't clone VM to node '${target}' (VM uses local storage)`)
  const existing = core.vms.get(newid)
  if (existing !== undefined && existing.node === node) throw fail(`unable to create VM ${newid}: config file already exists`)
  for (const [key, value] of drives) {
    const file = parseDrive(value).file
    if (!full && !file.includes("cloudinit") && !/:base-\d+-disk-\d+$/.test(file)) {
      throw fail(`Linked clone feature is not supported for '${file}' (${key})`)
    }
  }
  return { source, full, drives }
}
