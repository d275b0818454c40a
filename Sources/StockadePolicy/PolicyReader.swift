import StockadeCore
import Yams

/// Walks a composed YAML tree and turns every problem into a `StockadeError`
/// (`.invalidPolicy`) that starts with `file:line:column:` and names the key, so that a
/// user can go straight to the mistake. The section decoders build on these helpers.
struct PolicyReader {
    /// The file name to put in messages, as the caller gave it.
    let sourcePath: String

    /// One key and its value in a mapping.
    struct Entry {
        let key: String
        /// The full dotted name of the key, such as `limits.memory`.
        let keyPath: String
        let keyNode: Node
        let value: Node
    }

    func error(at mark: Mark?, _ message: String) -> StockadeError {
        StockadeError(.invalidPolicy, "\(sourcePath):\(mark?.line ?? 1):\(mark?.column ?? 1): \(message)")
    }

    func error(at node: Node, _ message: String) -> StockadeError {
        error(at: node.mark, message)
    }

    /// The entries of a mapping in file order.
    ///
    /// Keys must be plain scalars and appear once. When `allowed` is given, every key must
    /// be one of them; `notYetSupported` maps keys of later versions of the format to an
    /// explanation, so that they get a better message than "unknown key".
    /// - Parameter keyPath: the dotted name of the mapping, empty for the top level.
    func entries(
        of node: Node, at keyPath: String, allowed: [String]?,
        notYetSupported: [String: String] = [:], example: String
    ) throws -> [Entry] {
        guard case .mapping(let mapping) = node else {
            throw error(at: node, "\(named(keyPath)) must be a mapping such as \(example), got \(describe(node))")
        }
        var seen = Set<String>()
        var result: [Entry] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                throw error(at: keyNode, "keys \(inside(keyPath)) must be plain names, got \(describe(keyNode))")
            }
            let key = scalar.string
            guard seen.insert(key).inserted else {
                throw error(
                    at: keyNode,
                    "key '\(key.printableForMessages)' appears more than once \(inside(keyPath)); "
                        + "each key may be given only once")
            }
            if let allowed, !allowed.contains(key) {
                let expected = "expected one of: \(allowed.joined(separator: ", "))"
                if let explanation = notYetSupported[key] {
                    throw error(at: keyNode, "key '\(key)' \(inside(keyPath)) is not supported yet: \(explanation); \(expected)")
                }
                if key == "<<" {
                    throw error(at: keyNode, "YAML merge keys ('<<') are not supported \(inside(keyPath)); write the keys out; \(expected)")
                }
                throw error(at: keyNode, "unknown key '\(key.printableForMessages)' \(inside(keyPath)); \(expected)")
            }
            let childPath = keyPath.isEmpty ? key : "\(keyPath).\(key)"
            result.append(Entry(key: key, keyPath: childPath, keyNode: keyNode, value: value))
        }
        return result
    }

    /// The items of a list; an empty value (`key:` with nothing after it) is an empty list.
    func items(of node: Node, at keyPath: String, example: String) throws -> [Node] {
        if isNull(node) { return [] }
        guard case .sequence(let sequence) = node else {
            throw error(at: node, "\(named(keyPath)) must be a list such as \(example), got \(describe(node))")
        }
        return Array(sequence)
    }

    /// The text of a scalar; mappings and lists are errors that say what was expected.
    func text(of node: Node, at keyPath: String, expected: String) throws -> String {
        guard case .scalar(let scalar) = node else {
            throw error(at: node, "\(named(keyPath)) must be \(expected), got \(describe(node))")
        }
        return scalar.string
    }

    /// The most values a policy may hold once YAML aliases are expanded. Real policies
    /// hold a few hundred; the cap stops an "alias bomb" (anchors that nest aliases ten
    /// deep expand a few lines into billions of values) before anything walks the tree.
    static let maximumValueCount = 100_000

    /// Checks the whole tree once, before any section is read: it holds at most
    /// `maximumValueCount` values, and no tag outside the YAML core schema (`!env HOME`,
    /// `!include x`), since a reader that ignored such a tag would take the text
    /// literally, which is never what its author meant.
    func checkTree(_ root: Node) throws {
        var visited = 0
        func visit(_ node: Node) throws {
            visited += 1
            guard visited <= Self.maximumValueCount else {
                throw error(
                    at: node,
                    "the policy holds more than \(Self.maximumValueCount) values once its YAML aliases are expanded; "
                        + "write it out without nesting aliases")
            }
            let tag = node.tag.rawValue
            if !tag.isEmpty, tag != "!", !tag.hasPrefix("tag:yaml.org,2002:") {
                throw error(at: node, "the YAML tag '\(tag.printableForMessages)' is not supported; write the plain value instead")
            }
            switch node {
            case .mapping(let mapping):
                for (key, value) in mapping {
                    try visit(key)
                    try visit(value)
                }
            case .sequence(let sequence):
                for item in sequence { try visit(item) }
            case .scalar, .alias:
                break
            }
        }
        try visit(root)
    }

    /// True for `~`, `null` and an empty value: a section written but left empty.
    func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node else { return false }
        return scalar.style == .plain && node.tag == Tag(.null)
    }

    /// How a value appears in a message: `'lots'`, `nothing`, `a list`, `a mapping`.
    func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let scalar):
            if isNull(node) { return "nothing" }
            return "'\(scalar.string.printableForMessages)'"
        case .alias: return "an alias"
        }
    }

    private func named(_ keyPath: String) -> String {
        keyPath.isEmpty ? "the policy" : "'\(keyPath)'"
    }

    private func inside(_ keyPath: String) -> String {
        keyPath.isEmpty ? "at the top level" : "in '\(keyPath)'"
    }
}
