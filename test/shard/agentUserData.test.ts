import { describe, expect, it } from "@effect/vitest"
import { cloudInitSeed, InvalidCloudInitInput, normaliseUserData } from "../../src/domain/cloudInit.js"
import { AGENT_CONFIG_PATH, agentRegistrationOf, mimeParts, withAgentRegistration } from "../../src/domain/shard/userData.js"

const data = { registrationUrl: "https://10.0.0.1:8992/agent", nonce: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln", caPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" }

describe("user-data with the agent's registration settings", () => {
  it.each([
    ["a shell script", "#!/bin/sh\necho hello\n", "text/x-shellscript"],
    ["a bare script (gets a bash shebang)", normaliseUserData("apt-get update\n"), "text/x-shellscript"],
    ["a cloud-config", "#cloud-config\npackages: [nginx]\nwrite_files:\n  - path: /etc/motd\n    content: hi\n", "text/cloud-config"]
  ])("keeps %s as its own part, next to the agent.json cloud-config", (_name, template, type) => {
    const text = withAgentRegistration(template, data)
    expect(text.startsWith("Content-Type: multipart/mixed; boundary=")).toBe(true)
    const parts = mimeParts(text)!
    expect(parts).toHaveLength(2)
    expect(parts[0]!.headers["content-type"]).toContain(type)
    expect(parts[0]!.body.trimEnd()).toBe(template.trimEnd())
    expect(parts[1]!.headers["content-type"]).toContain("text/cloud-config")
    expect(parts[1]!.body).toContain(`path: ${AGENT_CONFIG_PATH}`)
    expect(parts[1]!.body).toContain(`permissions: "0600"`)
    // Appends to the template's write_files instead of replacing them.
    expect(parts[1]!.body).toContain("settings: [append]")
    expect(agentRegistrationOf(text)).toEqual(data)
    // The seed keeps the MIME document as it is (no shebang in front).
    const seed = cloudInitSeed({ instanceId: "webaaaaaaaaaaaaaaaaaaaaaaaaaa", userData: text })
    expect(seed).not.toBeInstanceOf(InvalidCloudInitInput)
    if (!(seed instanceof InvalidCloudInitInput)) expect(seed.userData).toBe(text)
  })

  it("empty user-data gives the agent part only; no agent.json means no settings", () => {
    const parts = mimeParts(withAgentRegistration("", data))!
    expect(parts).toHaveLength(1)
    expect(agentRegistrationOf(withAgentRegistration("", data))).toEqual(data)
    expect(agentRegistrationOf("#!/bin/sh\necho hi\n")).toBeUndefined()
  })

  it("picks a boundary the content does not contain", () => {
    const template = "#!/bin/sh\necho ==nstance-user-data==\n"
    const text = withAgentRegistration(template, data)
    expect(text).toContain("boundary=\"==nstance-user-data-1==\"")
    expect(mimeParts(text)![0]!.body.trimEnd()).toBe(template.trimEnd())
  })
})
