import Foundation
import StockadeCore
import Testing

@testable import StockadePolicy

/// The JSON Schema for editors (`schema/policy.schema.json`) and the examples of
/// `docs/policy.md` cannot drift from the loader: every mapping the loader reads has
/// exactly the keys the schema lists, the enums are the model's, and every example
/// policy in the reference loads (or, when marked `# invalid:`, fails to).

/// The package root: this file is `Tests/StockadePolicyTests/SchemaTests.swift`.
private let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

private func loadSchema() throws -> [String: Any] {
    let data = try Data(contentsOf: packageRoot.appendingPathComponent("schema/policy.schema.json"))
    let object = try JSONSerialization.jsonObject(with: data)
    return try #require(object as? [String: Any], "the schema is not a JSON object")
}

/// The value at `path` (object keys) below `root`.
private func value(at path: [String], in root: [String: Any]) -> Any? {
    var current: Any? = root
    for key in path {
        current = (current as? [String: Any])?[key]
    }
    return current
}

/// One mapping the loader reads: its key list and where the schema describes it.
struct SchemaSection: CustomTestStringConvertible, Sendable {
    let name: String
    let keys: [String]
    /// Object keys from the schema's root to the object schema of the mapping.
    let path: [String]
    var testDescription: String { name }
}

let schemaSections: [SchemaSection] = [
    SchemaSection(name: "topLevelKeys", keys: PolicyReader.topLevelKeys, path: []),
    SchemaSection(name: "filesystemKeys", keys: PolicyReader.filesystemKeys, path: ["$defs", "filesystem"]),
    SchemaSection(name: "workspaceKeys", keys: PolicyReader.workspaceKeys, path: ["$defs", "workspace"]),
    SchemaSection(name: "environmentKeys", keys: PolicyReader.environmentKeys, path: ["$defs", "environment"]),
    SchemaSection(name: "limitKeys", keys: PolicyReader.limitKeys, path: ["$defs", "limits"]),
    SchemaSection(name: "ruleKeys", keys: PolicyReader.ruleKeys, path: ["$defs", "rule"]),
    SchemaSection(name: "conditionKeys", keys: PolicyReader.conditionKeys, path: ["$defs", "conditions"]),
    SchemaSection(name: "argvKeys", keys: PolicyReader.argvKeys, path: ["$defs", "argv"]),
    SchemaSection(name: "labelKeys", keys: PolicyReader.labelKeys, path: ["$defs", "labels"]),
    SchemaSection(name: "sourceKeys", keys: PolicyReader.sourceKeys, path: ["$defs", "labelSource"]),
    SchemaSection(name: "invariantKeys", keys: PolicyReader.invariantKeys, path: ["$defs", "invariant"]),
    SchemaSection(name: "flowKeys", keys: PolicyReader.flowKeys, path: ["$defs", "denyFlow"]),
    SchemaSection(name: "declassifyKeys", keys: PolicyReader.declassifyKeys, path: ["$defs", "declassify"]),
    SchemaSection(name: "isolationKeys", keys: PolicyReader.isolationKeys, path: ["$defs", "isolation"]),
    SchemaSection(name: "networkKeys", keys: PolicyReader.networkKeys, path: ["$defs", "networkObject"]),
    SchemaSection(name: "hostGrantKeys", keys: PolicyReader.hostGrantKeys, path: ["$defs", "hostGrant", "oneOf", "1"]),
    SchemaSection(name: "approvalKeys", keys: PolicyReader.approvalKeys, path: ["$defs", "approval"]),
    SchemaSection(name: "secretsKeys", keys: PolicyReader.secretsKeys, path: ["$defs", "secrets"]),
    SchemaSection(name: "auditKeys", keys: PolicyReader.auditKeys, path: ["$defs", "audit"]),
]

/// `value(at:in:)` that also steps into arrays by index ("1").
private func schemaObject(at path: [String], in root: [String: Any]) -> [String: Any]? {
    var current: Any? = root
    for key in path {
        if let array = current as? [Any], let index = Int(key) {
            current = array.indices.contains(index) ? array[index] : nil
        } else {
            current = (current as? [String: Any])?[key]
        }
    }
    return current as? [String: Any]
}

@Test("the schema is JSON Schema 2020-12 and requires version")
func schemaIsValidJSON() throws {
    let schema = try loadSchema()
    #expect(schema["$schema"] as? String == "https://json-schema.org/draft/2020-12/schema")
    #expect(schema["required"] as? [String] == ["version"])
    #expect(schema["$defs"] is [String: Any])
}

@Test("each mapping of the schema has exactly the loader's keys and refuses others", arguments: schemaSections)
func schemaKeysMatchTheLoader(_ section: SchemaSection) throws {
    let schema = try loadSchema()
    let object = try #require(schemaObject(at: section.path, in: schema), "no schema at \(section.path.joined(separator: "/"))")
    let properties = try #require(object["properties"] as? [String: Any], "no properties at \(section.path.joined(separator: "/"))")
    #expect(Set(properties.keys) == Set(section.keys), "schema: \(properties.keys.sorted()), loader: \(section.keys.sorted())")
    #expect(object["additionalProperties"] as? Bool == false)
}

@Test("every object schema in the file refuses unknown keys")
func everyObjectIsClosed() throws {
    var open: [String] = []
    func walk(_ node: Any, _ path: String) {
        if let object = node as? [String: Any] {
            if object["type"] as? String == "object", object["properties"] != nil, object["additionalProperties"] as? Bool != false {
                open.append(path)
            }
            for (key, child) in object { walk(child, path + "/" + key) }
        } else if let array = node as? [Any] {
            for (index, child) in array.enumerated() { walk(child, path + "/\(index)") }
        }
    }
    walk(try loadSchema(), "#")
    #expect(open.isEmpty, "object schemas without additionalProperties: false: \(open)")
}

@Test("the schema's enums are the model's")
func schemaEnumsMatchTheModel() throws {
    let schema = try loadSchema()
    func enumeration(_ path: String...) -> Set<String> {
        Set((value(at: path, in: schema) as? [Any] ?? []).compactMap { $0 as? String })
    }
    func firstEnum(in node: Any?) -> Set<String> {
        if let object = node as? [String: Any] {
            if let values = object["enum"] as? [Any] { return Set(values.compactMap { $0 as? String }) }
            for option in object["oneOf"] as? [Any] ?? [] {
                let found = firstEnum(in: option)
                if !found.isEmpty { return found }
            }
        }
        return []
    }
    #expect(firstEnum(in: value(at: ["properties", "extends"], in: schema)) == Set(PolicyProfile.allCases.map(\.rawValue)))
    #expect(enumeration("$defs", "tool", "enum") == Set(Tool.allCases.map(\.rawValue) + Tool.aliases.keys))
    #expect(enumeration("$defs", "label", "enum") == Set(Label.allCases.map(\.rawValue)))
    #expect(enumeration("$defs", "rule", "properties", "decision", "enum") == Set(Decision.allCases.map(\.rawValue)))
    #expect(enumeration("$defs", "invariant", "properties", "decision", "enum") == ["ask", "deny"])
    #expect(enumeration("$defs", "denyFlow", "properties", "to", "enum") == Set(Sink.allCases.map(\.rawValue)))
    #expect(enumeration("$defs", "isolation", "properties", "tier", "enum") == Set(IsolationSettings.Tier.allCases.map(\.rawValue)))
    #expect(enumeration("$defs", "approval", "properties", "mode", "enum") == Set(ApprovalSettings.Mode.allCases.map(\.rawValue)))
    #expect(firstEnum(in: value(at: ["$defs", "secrets", "properties", "on_leak"], in: schema)) == Set(SecretsPolicy.LeakAction.allCases.map(\.rawValue)))
    #expect(enumeration("$defs", "workspace", "properties", "mode", "enum") == ["rw", "ro"])
    #expect(enumeration("$defs", "networkObject", "properties", "mode", "enum") == ["none", "allowlist"])
}

@Test("the schema names the built-in hidden and protected entries")
func schemaNamesTheDefaults() throws {
    let schema = try loadSchema()
    let hidden = value(at: ["$defs", "filesystem", "properties", "hidden", "description"], in: schema) as? String ?? ""
    let protected = value(at: ["$defs", "filesystem", "properties", "protected", "description"], in: schema) as? String ?? ""
    for pattern in HiddenDefaults.patterns { #expect(hidden.contains(pattern), "\(pattern)") }
    for pattern in ProtectedDefaults.patterns { #expect(protected.contains(pattern), "\(pattern)") }
}

/// The fenced `yaml` blocks of docs/policy.md that are whole policies: those whose
/// first line (after an editor modeline) is `version: 1`.
private func documentedPolicies() throws -> [(index: Int, text: String, invalid: Bool)] {
    let markdown = try String(contentsOf: packageRoot.appendingPathComponent("docs/policy.md"), encoding: .utf8)
    var blocks: [(Int, String, Bool)] = []
    var current: [Substring]?
    var index = 0
    for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
        if current == nil {
            if line == "```yaml" { current = [] }
        } else if line == "```" {
            let lines = current!.filter { !$0.hasPrefix("# yaml-language-server:") }
            if lines.first == "version: 1" {
                let invalid = lines.contains { $0.hasPrefix("# invalid:") }
                blocks.append((index, current!.joined(separator: "\n") + "\n", invalid))
            }
            index += 1
            current = nil
        } else {
            current!.append(line)
        }
    }
    return blocks
}

@Test("every example policy in docs/policy.md loads, and those marked invalid do not")
func documentedExamplesLoad() throws {
    let examples = try documentedPolicies()
    #expect(examples.count >= 15, "found only \(examples.count) example policies; did the extraction break?")
    #expect(examples.contains { $0.invalid })
    for example in examples {
        let name = "docs/policy.md (yaml block \(example.index))"
        if example.invalid {
            #expect(throws: StockadeError.self, "\(name) is marked invalid but loads") {
                _ = try PolicyLoader.parse(example.text, sourcePath: name, baseDirectory: "/project")
            }
        } else {
            #expect(throws: Never.self, "\(name)") {
                let document = try PolicyLoader.parse(example.text, sourcePath: name, baseDirectory: "/project")
                _ = try PolicyGuard(document)
            }
        }
    }
}
