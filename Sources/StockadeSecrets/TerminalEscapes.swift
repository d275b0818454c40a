/// Terminal escape sequences that act outside the text they come with: OSC 52 writes
/// the clipboard of whoever displays the output, OSC 8 turns text into a link whose
/// target the reader does not see. Output returned to agents (and shown to people)
/// loses them; other escapes (colours) stay.
public enum TerminalEscapes {
    /// `bytes` without OSC 52 and OSC 8 sequences, and how many were removed.
    public static func strip(_ bytes: [UInt8]) -> (bytes: [UInt8], removed: Int) {
        // Again until nothing changes: removing one sequence can join an ESC before it
        // to a "]52;" after it into a new one.
        var current = (bytes: bytes, removed: 0)
        while true {
            let pass = stripOnce(current.bytes)
            if pass.removed == 0 { return current }
            current = (pass.bytes, current.removed + pass.removed)
        }
    }

    static func stripOnce(_ bytes: [UInt8]) -> (bytes: [UInt8], removed: Int) {
        // The 8-bit forms (0x9D, 0x9C) are left alone: in UTF-8 text those bytes are
        // parts of ordinary characters, and terminals reading UTF-8 ignore them.
        guard bytes.contains(0x1B) else { return (bytes, 0) }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var removed = 0
        var index = 0
        while index < bytes.count {
            // OSC: ESC ] then the number and ';'.
            if bytes[index] == 0x1B, index + 1 < bytes.count, bytes[index + 1] == 0x5D, case let bodyStart = index + 2, let end = oscEnd(bytes, from: bodyStart), isStripped(bytes, from: bodyStart) {
                removed += 1
                index = end
                continue
            }
            output.append(bytes[index])
            index += 1
        }
        return (output, removed)
    }

    /// OSC 52 (clipboard) and OSC 8 (hyperlinks).
    static func isStripped(_ bytes: [UInt8], from start: Int) -> Bool {
        func starts(_ prefix: String) -> Bool {
            let pattern = Array(prefix.utf8)
            return start + pattern.count <= bytes.count && Array(bytes[start..<(start + pattern.count)]) == pattern
        }
        return starts("52;") || starts("8;")
    }

    /// Past the terminator (BEL or ESC \); an unterminated sequence runs to the end.
    static func oscEnd(_ bytes: [UInt8], from start: Int) -> Int? {
        var index = start
        while index < bytes.count {
            switch bytes[index] {
            case 0x07: return index + 1
            case 0x1B where index + 1 < bytes.count && bytes[index + 1] == 0x5C: return index + 2
            default: index += 1
            }
        }
        return bytes.count
    }
}
