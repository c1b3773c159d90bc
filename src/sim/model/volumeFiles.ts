/**
 * Uploaded volumes on disk (`--volumes-dir DIR`), laid out as PVE's file storages keep them, so what a VM
 * boots can be read back from outside with any tool (`isoinfo -R -x /user-data -i …`):
 *
 *   DIR/<node>/<storage>/template/iso/<name>    an ISO on a node's own storage (PVE's `local`: /var/lib/vz)
 *   DIR/shared/<storage>/template/iso/<name>    an ISO on a shared storage (PVE: /mnt/pve/<storage>, every node)
 *
 * Templates (`vztmpl`) go to `template/cache/`. A file is written whole (a temporary file renamed) when the
 * upload task ends and removed with the volume. Disk images carry no bytes in the simulator and get no file.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { join, relative, resolve } from "node:path"

/** PVE's directory of each content type inside a file storage. */
const CONTENT_DIRS: Readonly<Record<string, string>> = { iso: "template/iso", vztmpl: "template/cache", snippets: "snippets", import: "import" }

/** Where a volume with bytes lives under `dir`; undefined for a volid that is not `<storage>:<content>/<name>`. */
export const volumeFilePath = (dir: string, volume: { readonly volid: string; readonly storage: string; readonly content: string }, node: string | undefined): string | undefined => {
  const match = /^[^:]+:([a-z]+)\/([A-Za-z0-9_.-]+)$/.exec(volume.volid)
  const contentDir = CONTENT_DIRS[volume.content]
  if (match === null || contentDir === undefined || match[2] === "." || match[2] === "..") return undefined
  const root = resolve(dir)
  const path = resolve(root, node === undefined ? "shared" : node, volume.storage, contentDir, match[2]!)
  // Names are PVE-normalised ([A-Za-z0-9_.-]); still, nothing is written outside the directory.
  return relative(root, path).startsWith("..") ? undefined : path
}

/** Writes the bytes of a volume atomically (a reader never sees half an ISO). */
export const writeVolumeFile = (path: string, data: Uint8Array): void => {
  mkdirSync(join(path, ".."), { recursive: true })
  const staging = `${path}.uploading`
  writeFileSync(staging, data)
  renameSync(staging, path)
}

export const removeVolumeFile = (path: string): void => {
  rmSync(path, { force: true })
}
