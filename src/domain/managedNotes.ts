/**
 * The managed-notes block nstance keeps in a VM's description: annotations for operators looking at the
 * Proxmox UI (group, kind, template, created) and the identity of the event log that owns the VM (`log`).
 * The owner is the one thing nstance decides from it — a leader never adopts or deletes a VM whose notes
 * name another log — so the rules are: write it without touching a byte of the operator's own notes around
 * it, and read both marker styles (the guide's `# DO NOT EDIT … #` and the original Go server's
 * `**DO NOT EDIT …**`, whose blocks carry no `log`) so adopted VMs parse.
 */

export const BEGIN_MARKER = "# DO NOT EDIT BELOW - managed by nstance #"
export const END_MARKER = "# DO NOT EDIT ABOVE - managed by nstance #"
const LEGACY_BEGIN_MARKER = "**DO NOT EDIT BELOW - managed by nstance**"
const LEGACY_END_MARKER = "**DO NOT EDIT ABOVE - managed by nstance**"

// PVE renders notes as Markdown: two trailing spaces keep each annotation on its own line.
const LINE_BREAK = "  \n"

export interface ManagedNotes {
  readonly tenant?: string
  readonly group?: string
  readonly kind?: string
  readonly template?: string
  /** RFC 3339, UTC, whole seconds. */
  readonly created?: Date
  /** Identity of the shard event log that owns the VM (`LogIdentity`); absent on the original server's VMs. */
  readonly log?: string
}

const KEYS = ["tenant", "group", "kind", "template"] as const

/** RFC 3339 in UTC with whole seconds, as the original writes it (`2026-01-20T12:00:00Z`). */
export const formatCreated = (date: Date): string => date.toISOString().replace(/\.\d{3}Z$/, "Z")

// A value must stay on one line and cannot forge a marker.
const sanitise = (value: string): string => value.replace(/[\r\n]+/g, " ").replace(/DO NOT EDIT/g, "DO-NOT-EDIT").trim()

export const renderManagedNotes = (notes: ManagedNotes): string => {
  const lines = [BEGIN_MARKER]
  for (const key of KEYS) {
    const value = notes[key]
    if (value !== undefined && value !== "") lines.push(`${key}: ${sanitise(value)}`)
  }
  if (notes.created !== undefined) lines.push(`created: ${formatCreated(notes.created)}`)
  if (notes.log !== undefined && notes.log !== "") lines.push(`log: ${sanitise(notes.log)}`)
  lines.push(END_MARKER)
  return lines.join(LINE_BREAK)
}

interface BlockSpan {
  readonly start: number
  readonly end: number
  readonly innerStart: number
  readonly inner: string
}

const firstIndex = (text: string, markers: ReadonlyArray<string>, from: number) =>
  markers
    .map((marker) => ({ index: text.indexOf(marker, from), marker }))
    .filter((hit) => hit.index >= 0)
    .sort((a, b) => a.index - b.index)[0]

/** Where the block sits in `description`, if a begin marker is followed by an end marker. */
const findBlock = (description: string): BlockSpan | undefined => {
  const begin = firstIndex(description, [BEGIN_MARKER, LEGACY_BEGIN_MARKER], 0)
  if (begin === undefined) return undefined
  const innerStart = begin.index + begin.marker.length
  const end = firstIndex(description, [END_MARKER, LEGACY_END_MARKER], innerStart)
  if (end === undefined) return undefined
  return { start: begin.index, end: end.index + end.marker.length, innerStart, inner: description.slice(innerStart, end.index) }
}

/** Reads the block; undefined when there is none or it carries nothing recognisable. */
export const parseManagedNotes = (description: string): ManagedNotes | undefined => {
  const block = findBlock(description)
  if (block === undefined) return undefined
  const notes: { -readonly [K in keyof ManagedNotes]: ManagedNotes[K] } = {}
  for (const rawLine of block.inner.split("\n")) {
    const line = rawLine.trim()
    const colon = line.indexOf(":")
    if (colon <= 0) continue
    const key = line.slice(0, colon).trim()
    const value = line.slice(colon + 1).trim()
    if (value === "") continue
    if (key === "created") {
      const date = new Date(value)
      if (!Number.isNaN(date.getTime()) && /^\d{4}-\d{2}-\d{2}T/.test(value)) notes.created = date
    } else if (key === "log") {
      notes.log = value
    } else if ((KEYS as ReadonlyArray<string>).includes(key)) {
      notes[key as (typeof KEYS)[number]] = value
    }
  }
  return Object.keys(notes).length === 0 ? undefined : notes
}

/**
 * Puts `notes` into `description`: replaces an existing block in place, otherwise appends one after the
 * operator's text. Everything outside the block is kept byte for byte; a begin marker without an end
 * marker is left alone (a new block is appended) rather than guessing where the operator's text ends.
 */
export const upsertManagedNotes = (description: string, notes: ManagedNotes): string => {
  const rendered = renderManagedNotes(notes)
  const block = findBlock(description)
  if (block !== undefined) return description.slice(0, block.start) + rendered + description.slice(block.end)
  if (description === "") return rendered
  const separator = description.endsWith("\n\n") ? "" : description.endsWith("\n") ? "\n" : "\n\n"
  return description + separator + rendered
}

/** The operator's own text: the description with the managed block cut out. */
export const operatorText = (description: string): string => {
  const block = findBlock(description)
  return block === undefined ? description : description.slice(0, block.start) + description.slice(block.end)
}

/**
 * Who owns a VM by its notes: `ours` (they name `logId`), `other` (they name another log), or `unmarked`
 * (no block, or a block without `log`: the original server's VMs and those made before logs had identities).
 */
export type NotesOwner =
  | { readonly _tag: "ours" }
  | { readonly _tag: "other"; readonly logId: string }
  | { readonly _tag: "unmarked" }

export const ownerByNotes = (description: string | undefined, logId: string | undefined): NotesOwner => {
  const log = description === undefined ? undefined : parseManagedNotes(description)?.log
  if (log === undefined) return { _tag: "unmarked" }
  // Hand-edited notes may say anything: another log it is (never touched), named in at most 64 characters.
  return log === logId ? { _tag: "ours" } : { _tag: "other", logId: log.length > 64 ? `${log.slice(0, 63)}…` : log }
}

/**
 * `description` with its block naming `logId` as the VM's owner: the `log` line of an existing block is
 * replaced or added in place (its markers, other lines and the operator's text kept byte for byte, so the
 * original server's block stays in its own style); without a block, a new one carrying only `log` is appended.
 */
export const withOwnerLog = (description: string, logId: string): string => {
  const line = `log: ${sanitise(logId)}`
  const block = findBlock(description)
  if (block === undefined) return upsertManagedNotes(description, { log: logId })
  const lines = block.inner.split("\n")
  const at = lines.findIndex((raw) => /^\s*log\s*:/.test(raw))
  let inner: string
  if (at >= 0) {
    // Keep the line's own ending (PVE Markdown's two trailing spaces, a CR).
    lines[at] = line + (/(\s*)$/.exec(lines[at]!)?.[1] ?? "")
    inner = lines.join("\n")
  } else if (lines.length === 1) {
    // Both markers on one line.
    inner = `${block.inner}\n${line}${LINE_BREAK}`
  } else {
    // The last line, before the end marker, in the style of the line above it.
    const last = lines.length - 1
    lines.splice(last, 0, line + (/( *\r?)$/.exec(lines[last - 1]!)?.[1] ?? ""))
    inner = lines.join("\n")
  }
  return description.slice(0, block.innerStart) + inner + description.slice(block.innerStart + block.inner.length)
}
