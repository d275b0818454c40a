/// Parsing and printing of the quantities users write in flags and policies:
/// byte sizes ("256M", "1.5GiB", "4096") and durations ("10s", "250ms", "2m").
public enum Quantity {
    /// Parses a byte size. Suffixes K, M, G, T (with optional "i" and "B") are powers
    /// of 1024; a bare number is bytes. Returns nil for anything else, including zero
    /// or negative values and sizes that do not fit 64 bits.
    public static func parseBytes(_ text: String) -> UInt64? {
        let trimmed = text.trimmingSpaces()
        var digits = Substring(trimmed)
        var unitStart = digits.endIndex
        for index in digits.indices where !(digits[index].isNumber || digits[index] == ".") {
            unitStart = index
            break
        }
        let number = digits[..<unitStart]
        var unit = digits[unitStart...].lowercased()
        digits = number
        guard let value = Double(digits), value > 0 else { return nil }
        if unit.hasSuffix("b") { unit.removeLast() }
        if unit.hasSuffix("i") { unit.removeLast() }
        let multiplier: Double
        switch unit {
        case "": multiplier = 1
        case "k": multiplier = 1024
        case "m": multiplier = 1024 * 1024
        case "g": multiplier = 1024 * 1024 * 1024
        case "t": multiplier = 1024 * 1024 * 1024 * 1024
        default: return nil
        }
        let bytes = (value * multiplier).rounded()
        guard bytes >= 1, bytes < 1.8e19 else { return nil }
        return UInt64(bytes)
    }

    /// Parses a duration into milliseconds. Units: ms, s, m, h; a bare number is seconds.
    public static func parseMilliseconds(_ text: String) -> UInt64? {
        let trimmed = text.trimmingSpaces()
        var unitStart = trimmed.endIndex
        for index in trimmed.indices where !(trimmed[index].isNumber || trimmed[index] == ".") {
            unitStart = index
            break
        }
        guard let value = Double(trimmed[..<unitStart]), value > 0 else { return nil }
        let multiplier: Double
        switch trimmed[unitStart...].lowercased() {
        case "ms": multiplier = 1
        case "", "s", "sec": multiplier = 1000
        case "m", "min": multiplier = 60_000
        case "h": multiplier = 3_600_000
        default: return nil
        }
        let milliseconds = (value * multiplier).rounded()
        guard milliseconds >= 1, milliseconds < 1e15 else { return nil }
        return UInt64(milliseconds)
    }

    /// "256 MiB", "1.5 GiB", "512 bytes": the form limit messages use.
    public static func formatBytes(_ bytes: UInt64) -> String {
        let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where bytes >= size {
            if bytes % size == 0 { return "\(bytes / size) \(name)" }
            let value = Double(bytes) / Double(size)
            return "\((value * 10).rounded() / 10) \(name)"
        }
        return "\(bytes) bytes"
    }

    /// "10s", "1.5s", "250ms": the form limit messages use.
    public static func formatMilliseconds(_ milliseconds: UInt64) -> String {
        if milliseconds < 1000 { return "\(milliseconds)ms" }
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
        return "\(Double(milliseconds) / 1000)s"
    }
}

extension String {
    func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}
