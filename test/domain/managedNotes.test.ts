import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import {
  BEGIN_MARKER,
  END_MARKER,
  operatorText,
  parseManagedNotes,
  renderManagedNotes,
  upsertManagedNotes
} from "../../src/domain/managedNotes.js"

const created = new Date("2026-01-20T12:00:00.789Z")
const notes = { tenant: "acme", group: "web", kind: "web", template: "web", created }

describe("managed notes block", () => {
  it("renders the guide's markers with one annotation per Markdown line", () => {
    expect(renderManagedNotes({ group: "test", kind: "tst", created })).toBe(
      [BEGIN_MARKER, "group: test", "kind: tst", "created: 2026-01-20T12:00:00Z", END_MARKER].join("  \n")
    )
  })

  it("parses what it renders (whole seconds)", () => {
    expect(parseManagedNotes(renderManagedNotes(notes))).toEqual({
      ...notes,
      created: new Date("2026-01-20T12:00:00Z")
    })
  })

  it("parses the original Go server's marker style", () => {
    const legacy = [
      "**DO NOT EDIT BELOW - managed by nstance**",
      "group: test",
      "kind: tst",
      "template: tst",
      "created: 2026-01-20T12:00:00Z",
      "**DO NOT EDIT ABOVE - managed by nstance**"
    ].join("  \n")
    expect(parseManagedNotes(`operator text\n${legacy}`)).toEqual({
      group: "test",
      kind: "tst",
      template: "tst",
      created: new Date("2026-01-20T12:00:00Z")
    })
  })

  it.each([
    ["no block", "just notes"],
    ["begin without end", `${BEGIN_MARKER}\ngroup: x`],
    ["end before begin", `${END_MARKER}\ngroup: x\n${BEGIN_MARKER}`],
    ["empty block", `${BEGIN_MARKER}\n${END_MARKER}`]
  ])("returns nothing for %s", (_, description) => {
    expect(parseManagedNotes(description)).toBeUndefined()
  })

  it("ignores a created value that is not RFC 3339", () => {
    expect(parseManagedNotes(`${BEGIN_MARKER}\ngroup: g\ncreated: yesterday\n${END_MARKER}`)).toEqual({ group: "g" })
  })

  it("replaces an existing block in place, keeping text before and after", () => {
    const before = "Owner: team-a\n\n"
    const after = "\n\nDo not reboot on Fridays."
    const description = before + renderManagedNotes({ group: "old" }) + after
    const updated = upsertManagedNotes(description, notes)
    expect(updated.startsWith(before)).toBe(true)
    expect(updated.endsWith(after)).toBe(true)
    expect(parseManagedNotes(updated)?.group).toBe("web")
    expect(updated.split(BEGIN_MARKER)).toHaveLength(2)
  })

  it("appends after the operator's text when there is no block, and leaves a half block alone", () => {
    expect(upsertManagedNotes("", notes)).toBe(renderManagedNotes(notes))
    expect(upsertManagedNotes("mine", notes)).toBe(`mine\n\n${renderManagedNotes(notes)}`)
    const broken = `mine\n${BEGIN_MARKER}\ngroup: x`
    expect(upsertManagedNotes(broken, notes).startsWith(broken)).toBe(true)
  })

  it("keeps a value from forging a marker or a line", () => {
    const rendered = renderManagedNotes({ group: `evil\n${END_MARKER}\nkind: zzz` })
    expect(rendered.split(END_MARKER)).toHaveLength(2)
    expect(parseManagedNotes(rendered)?.kind).toBeUndefined()
  })

  const operatorNotes = FastCheck.string({ unit: "binary", maxLength: 200 }).filter(
    (text) => !text.includes("DO NOT EDIT")
  )

  it.prop(
    "keeps the operator's text outside the block byte for byte",
    [operatorNotes, operatorNotes, FastCheck.stringMatching(/^[a-z0-9-]{1,20}$/)],
    ([before, after, group]) => {
      const first = upsertManagedNotes(before, { group: "first", created })
      const withTail = first + after
      const updated = upsertManagedNotes(withTail, { group, created })
      expect(operatorText(updated)).toBe(operatorText(withTail))
      expect(updated.startsWith(before)).toBe(true)
      expect(updated.endsWith(after)).toBe(true)
      expect(parseManagedNotes(updated)?.group).toBe(group)
      expect(upsertManagedNotes(updated, { group, created })).toBe(updated)
    }
  )
})
