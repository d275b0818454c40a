import Foundation

/// Writes to stdout and stderr that never crash on a closed reader (EPIPE), unlike
/// FileHandle.write.
enum StandardStreams {
    static func out(_ data: Data) { write(data, to: STDOUT_FILENO) }
    static func err(_ text: String) { write(Data(text.utf8), to: STDERR_FILENO) }

    /// `value` as indented JSON with sorted keys, and a newline, on stdout.
    static func json(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        out(try encoder.encode(value) + Data("\n".utf8))
    }

    private static func write(_ data: Data, to fd: Int32) {
        data.withUnsafeBytes { raw in
            guard var pointer = raw.baseAddress else { return }
            var remaining = raw.count
            while remaining > 0 {
                let written = Glibc.write(fd, pointer, remaining)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }
                pointer += written
                remaining -= written
            }
        }
    }
}
