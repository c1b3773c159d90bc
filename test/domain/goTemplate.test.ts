/**
 * The Go text/template engine user-data and args are rendered with: every construct, Go's output for
 * numbers and printf, the zero value of a missing key, and parse and render errors at their line and column.
 * Expected outputs are what Go's text/template (option missingkey=zero) writes for the same template and data.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { parseGoTemplate, renderGoTemplate, renderGoTemplateText, type TemplateValue } from "../../src/domain/goTemplate/index.js"

const data: TemplateValue = {
  Cluster: { ID: "acme", CACert: "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n" },
  Instance: { ID: "web06dx9xy919t3v9kzd2xdsyzb3g", Kind: "web", Arch: "amd64", Type: "" },
  Vars: { Env: "prod", b: "2", a: "1", "with-dash": "d" },
  Nonce: "eyJhbGciOi.nonce",
  List: ["x", "y", "z"],
  Empty: [],
  Nested: { Inner: { Leaf: "leaf" } }
}

const render = (source: string, value: TemplateValue = data): string =>
  Either.getOrThrowWith(renderGoTemplateText(source, value), (error) => new Error(error.message))

const failure = (source: string, value: TemplateValue = data): string =>
  Either.match(renderGoTemplateText(source, value), {
    onLeft: (error) => error.message,
    onRight: (output) => `rendered ${JSON.stringify(output)}`
  })

describe("Go templates: text, fields and variables", () => {
  it.each([
    ["plain text, no actions", "#!/bin/sh\necho hi\n", "#!/bin/sh\necho hi\n"],
    ["fields and nested fields", "{{ .Instance.ID }} {{ .Nested.Inner.Leaf }}", "web06dx9xy919t3v9kzd2xdsyzb3g leaf"],
    ["no spaces inside the braces", "{{.Vars.Env}}", "prod"],
    ["a map printed in key order", "{{ .Vars }}", "map[Env:prod a:1 b:2 with-dash:d]"],
    ["a list", "{{ .List }}", "[x y z]"],
    ["$ is the data inside with/range", "{{ with .Nested }}{{ $.Vars.Env }}-{{ .Inner.Leaf }}{{ end }}", "prod-leaf"],
    ["declare and assign", "{{ $x := .Vars.a }}{{ $x }}{{ $x = .Vars.b }}{{ $x }}", "12"],
    ["a variable's field", "{{ $n := .Nested }}{{ $n.Inner.Leaf }}", "leaf"],
    ["a variable as a pipeline's first stage", "{{ $x := .Vars.Env }}{{ $x | printf \"<%s>\" }}{{ $x}}", "<prod>prod"],
    ["a parenthesised pipeline's field", "{{ (index .Nested \"Inner\").Leaf }}", "leaf"],
    ["multi-line PEM as it is", "{{ .Cluster.CACert }}", "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n"],
    ["an action spanning lines", "{{ printf\n  \"%s\"\n  .Vars.Env }}", "prod"],
    ["}} inside a string does not end the action", "{{ \"a}}b\" }}", "a}}b"]
  ])("%s", (_name, source, expected) => {
    expect(render(source)).toBe(expected)
  })

  it.each([
    ["a missing map key", "[{{ .Vars.Nope }}]", "[]"],
    ["a missing top-level key", "[{{ .Image.debian }}][{{ .Nothing }}]", "[][]"],
    ["a field of a missing key", "[{{ .Nothing.Deeper.Still }}]", "[]"],
    ["a missing key is false", "{{ if .Vars.Nope }}yes{{ else }}no{{ end }}", "no"],
    ["a missing key ranges zero times", "{{ range .Vars.Nope }}x{{ else }}none{{ end }}", "none"],
    ["a missing key compares as \"\"", "{{ eq .Vars.Nope \"\" }} {{ len .Vars.Nope }}", "true 0"],
    ["a missing key through index", "[{{ index .Vars \"nope\" }}]", "[]"]
  ])("zero value: %s", (_name, source, expected) => {
    expect(render(source)).toBe(expected)
  })
})

describe("Go templates: trim markers and comments", () => {
  it.each([
    ["left and right trim", "a  \n {{- .Vars.a -}} \n\t b", "a1b"],
    ["trim only with a space after the dash: {{-3}} is minus three", "{{-3}}", "-3"],
    ["a comment", "a{{/* note */}}b", "ab"],
    ["a trimmed multi-line comment", "a \n{{- /* one\ntwo */ -}}\n b", "ab"],
    ["a cloud-config with trimmed control lines", "#cloud-config\nruncmd:\n{{- range .List }}\n  - echo {{ . }}\n{{- end }}\n", "#cloud-config\nruncmd:\n  - echo x\n  - echo y\n  - echo z\n"]
  ])("%s", (_name, source, expected) => {
    expect(render(source)).toBe(expected)
  })
})

describe("Go templates: control structures", () => {
  it.each([
    ["if", "{{ if .Vars.Env }}on{{ end }}", "on"],
    ["if/else", "{{ if .Vars.Nope }}on{{ else }}off{{ end }}", "off"],
    ["else if chains", "{{ if eq .Vars.Env \"dev\" }}d{{ else if eq .Vars.Env \"prod\" }}p{{ else }}o{{ end }}", "p"],
    ["a declaration in if is scoped to it", "{{ if $v := .Vars.a }}{{ $v }}{{ end }}", "1"],
    ["with sets the dot", "{{ with .Nested.Inner }}{{ .Leaf }}{{ end }}", "leaf"],
    ["with/else", "{{ with .Vars.Nope }}x{{ else }}empty{{ end }}", "empty"],
    ["else with", "{{ with .Vars.Nope }}x{{ else with .Vars.Env }}{{ . }}{{ end }}", "prod"],
    ["range over a list", "{{ range .List }}<{{ . }}>{{ end }}", "<x><y><z>"],
    ["range with index and element", "{{ range $i, $v := .List }}{{ $i }}={{ $v }} {{ end }}", "0=x 1=y 2=z "],
    ["range over a map, in key order", "{{ range $k, $v := .Vars }}{{ $k }}:{{ $v }};{{ end }}", "Env:prod;a:1;b:2;with-dash:d;"],
    ["range with one variable gets the element", "{{ range $v := .List }}{{ $v }}{{ end }}", "xyz"],
    ["range/else on an empty list", "{{ range .Empty }}x{{ else }}nothing{{ end }}", "nothing"],
    ["range over an int", "{{ range 3 }}{{ . }}{{ end }}", "012"],
    ["break", "{{ range .List }}{{ if eq . \"y\" }}{{ break }}{{ end }}{{ . }}{{ end }}", "x"],
    ["continue", "{{ range .List }}{{ if eq . \"y\" }}{{ continue }}{{ end }}{{ . }}{{ end }}", "xz"],
    ["nested ranges", "{{ range $a := .List }}{{ range $.Empty }}-{{ else }}{{ $a }}{{ end }}{{ end }}", "xyz"]
  ])("%s", (_name, source, expected) => {
    expect(render(source)).toBe(expected)
  })
})

describe("Go templates: literals, pipelines and functions", () => {
  it.each([
    ["strings with Go escapes", String.raw`{{ "tab\tnl\n\x41\u00e9\101" }}`, "tab\tnl\nAéA"],
    ["raw strings", "{{ `a\\nb` }}", "a\\nb"],
    ["integers (decimal, hex, octal, binary, underscores, chars)", "{{ 42 }} {{ 0x1F }} {{ 017 }} {{ 0b101 }} {{ 1_000 }} {{ 'a' }}", "42 31 15 5 1000 97"],
    ["floats print as Go's %v", "{{ 1.5 }} {{ 1.0 }} {{ 100000.0 }} {{ 1e6 }} {{ 1234567.0 }} {{ 0.0001 }} {{ 0.00001 }} {{ -2.5 }}", "1.5 1 100000 1e+06 1.234567e+06 0.0001 1e-05 -2.5"],
    ["booleans", "{{ true }} {{ false }}", "true false"],
    ["a pipeline passes its value last", "{{ .Vars.Env | printf \"%s!\" | printf \"<%s>\" }}", "<prod!>"],
    ["printf verbs, widths and flags", "{{ printf \"%s|%5s|%-5s|%05d|%+d|%x|%X|%o|%b|%c|%q|%v|%T|%t|%%\" \"a\" \"b\" \"c\" 42 3 255 255 8 5 65 \"q\" .List .Vars true }}", "a|    b|c    |00042|+3|ff|FF|10|101|A|\"q\"|[x y z]|map[string]string|true|%"],
    ["printf floats round half to even", "{{ printf \"%.2f %.0f %.0f %e %g %.3g\" 0.125 2.5 3.5 123456.789 0.00001234 3.14159 }}", "0.12 2 4 1.234568e+05 1.234e-05 3.14"],
    ["printf reports mismatches in band, as Go", "{{ printf \"%d|%s|%d %d\" \"x\" 1 2 }}", "%!d(string=x)|%!s(int=1)|2 %!d(MISSING)"],
    ["printf extra operands", "{{ printf \"%s\" \"a\" 1 }}", "a%!(EXTRA int=1)"],
    ["print adds spaces between non-strings only", "{{ print 1 2 \"a\" \"b\" 3 }}", "1 2ab3"],
    ["println", "{{ println \"a\" 1 }}", "a 1\n"],
    ["len counts bytes, items and keys", "{{ len \"héllo\" }} {{ len .List }} {{ len .Vars }}", "6 3 4"],
    ["index into lists, maps and nested", "{{ index .List 1 }} {{ index .Vars \"with-dash\" }} {{ index .Nested \"Inner\" \"Leaf\" }}", "y d leaf"],
    ["slice", "{{ slice \"hello\" 1 3 }} {{ slice .List 1 }}", "el [y z]"],
    ["and/or return the deciding operand", "{{ and 1 0 2 }} {{ and 1 2 }} {{ or 0 \"\" \"z\" }} {{ or 0 \"\" }}", "0 2 z "],
    ["not", "{{ not .Vars.Nope }} {{ not 1 }}", "true false"],
    ["comparisons", "{{ eq 1 1 }} {{ eq \"a\" \"b\" \"a\" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ le \"b\" \"a\" }} {{ gt 2.5 1.5 }} {{ ge 2 2 }}", "true true true true false true true"],
    ["html, js, urlquery", "{{ html \"<a href='x'>&</a>\" }} {{ js \"it's <b>\" }} {{ urlquery \"a b&c/d\" }}", "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt; it\\'s \\u003Cb\\u003E a+b%26c%2Fd"]
  ])("%s", (_name, source, expected) => {
    expect(render(source)).toBe(expected)
  })

  it("a parsed template renders again with other data", () => {
    const template = Either.getOrThrow(parseGoTemplate("hello {{ .Name }}"))
    expect(Either.getOrThrow(renderGoTemplate(template, { Name: "a" }))).toBe("hello a")
    expect(Either.getOrThrow(renderGoTemplate(template, { Name: "b" }))).toBe("hello b")
  })
})

describe("Go templates: parse errors name the line and column", () => {
  it.each([
    ["an unclosed action", "ok\n  {{ .Vars.Env", "line 2, column 3: unclosed action"],
    ["an unclosed comment", "{{/* never ends", "line 1, column 1: unclosed comment"],
    ["an unknown function", "#!/bin/sh\necho {{ upper .Vars.Env }}", "line 2, column 9: function \"upper\" not defined"],
    ["an undefined variable", "{{ $y }}", "line 1, column 4: undefined variable \"$y\""],
    ["a variable used outside its block", "{{ if true }}{{ $v := 1 }}{{ end }}{{ $v }}", "line 1, column 39: undefined variable \"$v\""],
    ["a missing end", "{{ if .A }}\nx\n", "line 3, column 1: unexpected EOF"],
    ["an end too many", "a\nb {{ end }}", "line 2, column 6: unexpected {{end}}"],
    ["an else outside a block", "{{ else }}", "line 1, column 4: unexpected {{else}}"],
    ["a second else", "{{ if .A }}a{{ else }}b{{ else }}c{{ end }}", "line 1, column 27: expected end; found {{else}} (a second {{else}} in {{if}})"],
    ["an if without a condition", "{{ if }}{{ end }}", "line 1, column 7: missing value for if"],
    ["an empty action", "{{ }}", "line 1, column 4: missing value for command"],
    ["a bad character", "{{ .A@ }}", "line 1, column 6: bad character U+0040 \"@\""],
    ["an unterminated string", "{{ \"abc }}", "line 1, column 4: unterminated quoted string"],
    ["a bad number", "{{ 12ab }}", "line 1, column 4: bad number syntax: \"12a\""],
    ["a literal as a later pipeline stage", "{{ .A | \"b\" }}", "line 1, column 9: non executable command in pipeline stage 2"],
    ["a pipe with nothing after it", "{{ .A | }}", "line 1, column 7: missing command after | in command"],
    ["break outside range", "{{ break }}", "line 1, column 4: {{break}} outside {{range}}"],
    ["a built-in with the wrong arity", "{{ len .A .B }}", "line 1, column 4: wrong number of args for len: want 1 got 2"],
    ["arity counts the piped value", "{{ .A | not .B }}", "line 1, column 9: wrong number of args for not: want 1 got 2"],
    ["named templates are not supported", "{{ define \"x\" }}y{{ end }}", "line 1, column 4: {{define}} is not supported: a user-data or arg is one template, with no named templates"],
    ["a field after a literal", "{{ \"a\".B }}", "line 1, column 4: unexpected . after term \"\\\"a\\\"\""],
    ["an unexpected right paren", "{{ .A) }}", "line 1, column 6: unexpected right paren"],
    ["columns count characters, not bytes", "héllo wörld {{ nope }}", "line 1, column 16: function \"nope\" not defined"]
  ])("%s", (_name, source, expected) => {
    expect(failure(source)).toBe(expected)
  })

  it("nesting is bounded", () => {
    expect(failure(`${"{{ if true }}".repeat(250)}x${"{{ end }}".repeat(250)}`)).toMatch(/^line 1, column \d+: nested more than 200 levels deep$/)
  })
})

describe("Go templates: render errors name the line, column and action, never a value", () => {
  it.each([
    ["a field of a string", "a\n{{ .Vars.Env.Sub }}", "line 2, column 4: executing <.Vars.Env.Sub>: can't evaluate field Sub in type string"],
    ["arguments to a field", "{{ .Vars.Env \"x\" }}", "line 1, column 4: executing <.Vars.Env>: Env is not a method but has arguments"],
    ["int against float", "{{ eq 1 1.0 }}", "line 1, column 4: executing <eq>: error calling eq: incompatible types for comparison (int and float64)"],
    ["ordering booleans", "{{ lt true false }}", "line 1, column 4: executing <lt>: error calling lt: invalid type for comparison (bool)"],
    ["an index out of range", "{{ index .List 5 }}", "line 1, column 4: executing <index>: error calling index: index out of range: 5"],
    ["the nonce compared to a number: only types are named", "{{ eq .Nonce 1 }}", "line 1, column 4: executing <eq>: error calling eq: incompatible types for comparison (string and int)"],
    ["ranging over a string", "{{ range .Nonce }}{{ end }}", "line 1, column 4: range can't iterate over a value of type string"],
    ["nil as a command", "{{ nil }}", "line 1, column 4: executing <nil>: nil is not a command"],
    ["printf with a non-string format", "{{ printf 1 }}", "line 1, column 4: executing <printf>: error calling printf: wrong type for value; expected string; got int"]
  ])("%s", (_name, source, expected) => {
    expect(failure(source)).toBe(expected)
    expect(failure(source)).not.toContain("eyJhbGciOi")
  })

  it("output and work are bounded", () => {
    expect(failure("{{ range 2000000 }}x{{ end }}")).toBe("line 1, column 4: the template takes more than 1000000 steps to render")
    const wide = `{{ printf "%900000s" "" }}{{ printf "%900000s" "" }}`
    expect(failure(wide)).toBe("line 1, column 30: the template renders more than 1048576 characters")
  })
})
