/// A secret value the supervisor holds and the sandbox must not get out.
public struct KnownSecret: Sendable {
    /// How it is named in findings and redactions (`env:OPENAI_API_KEY`): never the value.
    public let name: String
    public let value: [UInt8]

    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

/// The spellings of a secret that the leak guard looks for. Every one is searched with
/// line breaks left out (the scanner skips CR and LF), so a value wrapped over lines,
/// or split between reads, is found as well.
enum SecretVariants {
    /// Shortest encoded core worth looking for: shorter runs of base64 or hex would
    /// match innocent text by chance.
    static let minimumLength = 8

    /// (encoding, bytes) for every spelling of `secret`, duplicates removed.
    static func variants(of secret: [UInt8]) -> [(encoding: String, bytes: [UInt8])] {
        let value = secret.filter { $0 != 0x0A && $0 != 0x0D }
        guard value.count >= 4 else { return [] }
        var result: [(String, [UInt8])] = [("raw", value), ("reversed", value.reversed())]
        result.append(("hex", hex(value, upper: false)))
        result.append(("hex-upper", hex(value, upper: true)))
        for alignment in 0..<3 {
            if let core = base64Core(value, alignment: alignment, alphabet: standardAlphabet) {
                result.append(("base64", core))
            }
            if let core = base64Core(value, alignment: alignment, alphabet: urlAlphabet) {
                result.append(("base64url", core))
            }
        }
        result.append(("percent", percent(value, everything: true, upper: true)))
        result.append(("percent-lower", percent(value, everything: true, upper: false)))
        result.append(("url", percent(value, everything: false, upper: true)))
        result.append(("json", json(value)))
        var seen = Set<[UInt8]>()
        // The raw value counts at any length the policy gave (a short password is still
        // the password); encoded cores only from `minimumLength`.
        return result.filter { encoding, bytes in
            (bytes.count >= minimumLength || encoding == "raw") && seen.insert(bytes).inserted
        }
    }

    static let standardAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    static let urlAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func hex(_ bytes: [UInt8], upper: Bool) -> [UInt8] {
        let digits = Array((upper ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return out
    }

    /// The base64 characters that depend only on the secret's bytes when it starts
    /// `alignment` bytes into a 3-byte group: whatever surrounds it, any base64 encoding
    /// of text holding the secret at that alignment contains them.
    static func base64Core(_ secret: [UInt8], alignment: Int, alphabet: [UInt8]) -> [UInt8]? {
        let bytes = [UInt8](repeating: 0, count: alignment) + secret
        let bitCount = bytes.count * 8
        let start = alignment * 8
        var out: [UInt8] = []
        var index = 0
        while index * 6 + 6 <= bitCount {
            let bit = index * 6
            if bit >= start {
                var value = 0
                for offset in 0..<6 {
                    let position = bit + offset
                    let byte = bytes[position / 8]
                    value = value << 1 | Int((byte >> (7 - UInt8(position % 8))) & 1)
                }
                out.append(alphabet[value])
            }
            index += 1
        }
        return out.isEmpty ? nil : out
    }

    static func percent(_ bytes: [UInt8], everything: Bool, upper: Bool) -> [UInt8] {
        let digits = Array((upper ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
        var out: [UInt8] = []
        for byte in bytes {
            let unreserved = (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || byte == 0x2D || byte == 0x2E || byte == 0x5F || byte == 0x7E
            if !everything && unreserved {
                out.append(byte)
            } else {
                out += [0x25, digits[Int(byte >> 4)], digits[Int(byte & 15)]]
            }
        }
        return out
    }

    /// As a JSON string's content: quotes, backslashes, slashes and control characters
    /// escaped (other bytes as they are).
    static func json(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        let digits = Array("0123456789abcdef".utf8)
        for byte in bytes {
            switch byte {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x2F: out += [0x5C, 0x2F]
            case 0x09: out += [0x5C, 0x74]
            case 0x08: out += [0x5C, 0x62]
            case 0x0C: out += [0x5C, 0x66]
            case 0..<0x20: out += Array("\\u00".utf8) + [digits[Int(byte >> 4)], digits[Int(byte & 15)]]
            default: out.append(byte)
            }
        }
        return out
    }
}

/// A multi-pattern automaton (Aho–Corasick) over bytes, as a dense transition table on
/// a reduced alphabet: one table lookup per input byte, whatever the number of patterns.
/// It keeps its state between calls, so a match split between two reads is found.
struct PatternAutomaton: Sendable {
    /// Byte → column; bytes in no pattern share column 0.
    let classes: [UInt16]
    let width: Int
    /// transitions[state * width + column]
    let transitions: [Int32]
    /// Patterns ending at each state (its own and its suffix links'), flattened: those
    /// of state `s` are `outputList[outputStart[s]..<outputStart[s + 1]]` (no nested
    /// arrays to retain on the hot path).
    let outputStart: [Int32]
    let outputList: [Int32]
    let lengths: [Int]

    init(patterns: [[UInt8]]) {
        var classes = [UInt16](repeating: 0, count: 256)
        var next: UInt16 = 1
        for pattern in patterns {
            for byte in pattern where classes[Int(byte)] == 0 {
                classes[Int(byte)] = next
                next += 1
            }
        }
        let width = Int(next)
        // The trie.
        var goto: [[Int32]] = [[Int32](repeating: -1, count: width)]
        var outputs: [[Int32]] = [[]]
        for (index, pattern) in patterns.enumerated() {
            var state = 0
            for byte in pattern {
                let column = Int(classes[Int(byte)])
                if goto[state][column] < 0 {
                    goto[state][column] = Int32(goto.count)
                    goto.append([Int32](repeating: -1, count: width))
                    outputs.append([])
                }
                state = Int(goto[state][column])
            }
            outputs[state].append(Int32(index))
        }
        // Breadth first: failure links folded into a full transition table.
        var failure = [Int32](repeating: 0, count: goto.count)
        var table = [Int32](repeating: 0, count: goto.count * width)
        var queue: [Int] = []
        for column in 0..<width {
            let target = goto[0][column]
            if target > 0 {
                table[column] = target
                failure[Int(target)] = 0
                queue.append(Int(target))
            }
        }
        var head = 0
        while head < queue.count {
            let state = queue[head]
            head += 1
            outputs[state] += outputs[Int(failure[state])]
            for column in 0..<width {
                let target = goto[state][column]
                if target >= 0 {
                    failure[Int(target)] = table[Int(failure[state]) * width + column]
                    table[state * width + column] = target
                    queue.append(Int(target))
                } else {
                    table[state * width + column] = table[Int(failure[state]) * width + column]
                }
            }
        }
        self.classes = classes
        self.width = width
        self.transitions = table
        var starts: [Int32] = [0]
        var list: [Int32] = []
        for state in outputs {
            list += state
            starts.append(Int32(list.count))
        }
        outputStart = starts
        outputList = list
        lengths = patterns.map(\.count)
    }
}
