import Foundation
import StockadeCore

/// What a toolset needs to know of one ELF file: its dynamic loader and the shared
/// libraries it asks for, and where it asks the loader to look for them.
///
/// Plain data; `Sendable`.
public struct ELFDependencies: Equatable, Sendable {
    /// `e_type`: 1 relocatable, 2 executable, 3 shared object or PIE.
    public var fileType: UInt16
    /// `e_machine` (62 is x86-64, 183 is AArch64). A library is only usable by a program
    /// of the same machine.
    public var machine: UInt16
    /// The dynamic loader named by `PT_INTERP`, if any (a static or a library has none).
    public var interpreter: String?
    /// `DT_NEEDED` entries in file order: sonames such as `libc.so.6`, or paths.
    public var needed: [String]
    /// `DT_RPATH` directories (unexpanded: `$ORIGIN` is left as written).
    public var runPathsOld: [String]
    /// `DT_RUNPATH` directories (unexpanded).
    public var runPaths: [String]
}

/// A reader of 64-bit little-endian ELF files that takes only what dependency resolution
/// needs from the program headers and the dynamic section.
///
/// It reads host binaries, which a toolset then places inside sandboxes, so it is
/// written for hostile input all the same: every offset and size is checked against the
/// file and against fixed bounds before use, arithmetic cannot overflow, and a truncated
/// or malformed file is an error, never a crash or an unbounded read. Thread-safe (no
/// shared state).
public enum ELFReader {
    /// Most program headers read; real files have a dozen or so.
    static let maximumProgramHeaders = 1024
    /// Largest dynamic section read (64 Ki entries).
    static let maximumDynamicBytes = 1 << 20
    /// Longest loader path and longest string (soname, run path) accepted.
    static let maximumStringBytes = 4096

    /// The first four bytes of every ELF file.
    static let magic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]

    /// Reads `path`. Throws `StockadeError(.unsupported)` naming the file when it is not a
    /// 64-bit little-endian ELF file or is malformed, `.notFound` when it cannot be opened.
    public static func read(path: String) throws -> ELFDependencies {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw StockadeError(.notFound, "failed to read \(path): \(errnoText(errno))")
        }
        defer { close(fd) }
        return try parse(name: path) { offset, count in
            guard offset <= UInt64(Int64.max) - UInt64(count) else { return [] }
            var bytes = [UInt8](repeating: 0, count: count)
            var filled = 0
            while filled < count {
                let got = bytes.withUnsafeMutableBytes { raw in
                    pread(fd, raw.baseAddress! + filled, count - filled, off_t(offset) + off_t(filled))
                }
                if got < 0 && errno == EINTR { continue }
                if got <= 0 { break }
                filled += got
            }
            return Array(bytes[0..<filled])
        }
    }

    /// Parses ELF bytes held in memory (for tests and small files).
    public static func parse(bytes: [UInt8], name: String = "<bytes>") throws -> ELFDependencies {
        try parse(name: name) { offset, count in
            guard offset < UInt64(bytes.count) else { return [] }
            let start = Int(offset)
            return Array(bytes[start..<min(bytes.count, start + count)])
        }
    }

    /// Whether `bytes` start like an ELF file.
    public static func hasMagic(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && Array(bytes[0..<4]) == magic
    }

    /// The parser proper. `read(offset, count)` returns at most `count` bytes at `offset`
    /// (fewer at the end of the file, none past it); `count` is always bounded here.
    static func parse(name: String, read: (UInt64, Int) throws -> [UInt8]) throws -> ELFDependencies {
        func failure(_ why: String) -> StockadeError {
            StockadeError(.unsupported, "failed to read the ELF file \(name): \(why). Only intact 64-bit little-endian ELF programs and libraries can be part of a toolset")
        }
        func exactly(_ offset: UInt64, _ count: Int, _ what: String) throws -> [UInt8] {
            let bytes = try read(offset, count)
            guard bytes.count == count else { throw failure("the file ends inside its \(what) (truncated)") }
            return bytes
        }
        let header = try read(0, 64)
        guard hasMagic(header) else { throw failure("it does not start with the ELF magic number") }
        guard header.count >= 6 else { throw failure("the file ends inside its ELF header (truncated)") }
        guard header[4] == 2 else { throw failure(header[4] == 1 ? "it is a 32-bit ELF file" : "its ELF class \(header[4]) is unknown") }
        guard header[5] == 1 else { throw failure(header[5] == 2 ? "it is a big-endian ELF file" : "its ELF data encoding \(header[5]) is unknown") }
        guard header.count == 64 else { throw failure("the file ends inside its ELF header (truncated)") }

        let fileType = header.u16(16)
        let machine = header.u16(18)
        let programHeaderOffset = header.u64(32)
        let programHeaderSize = Int(header.u16(54))
        let programHeaderCount = Int(header.u16(56))
        var result = ELFDependencies(fileType: fileType, machine: machine, interpreter: nil, needed: [], runPathsOld: [], runPaths: [])
        if programHeaderCount == 0 { return result }  // a relocatable object: no loader, no libraries
        guard programHeaderSize >= 56, programHeaderSize <= 256 else { throw failure("its program header size \(programHeaderSize) is not plausible") }
        guard programHeaderCount <= maximumProgramHeaders else { throw failure("it claims \(programHeaderCount) program headers") }
        let table = try exactly(programHeaderOffset, programHeaderSize * programHeaderCount, "program headers")

        struct Segment { var type: UInt32; var offset: UInt64; var address: UInt64; var fileSize: UInt64 }
        var loads: [Segment] = []
        var dynamic: Segment?
        var interpreterSegment: Segment?
        for index in 0..<programHeaderCount {
            let base = index * programHeaderSize
            let segment = Segment(type: table.u32(base), offset: table.u64(base + 8), address: table.u64(base + 16), fileSize: table.u64(base + 32))
            switch segment.type {
            case 1: loads.append(segment)               // PT_LOAD
            case 2: dynamic = dynamic ?? segment        // PT_DYNAMIC
            case 3: interpreterSegment = interpreterSegment ?? segment  // PT_INTERP
            default: break
            }
        }

        if let segment = interpreterSegment {
            guard segment.fileSize > 0, segment.fileSize <= UInt64(maximumStringBytes) else {
                throw failure("its loader path (PT_INTERP) is \(segment.fileSize) bytes long")
            }
            var bytes = try exactly(segment.offset, Int(segment.fileSize), "loader path (PT_INTERP)")
            if let end = bytes.firstIndex(of: 0) { bytes.removeSubrange(end...) }
            guard let path = String(validating: bytes, as: UTF8.self), path.hasPrefix("/") else {
                throw failure("its loader path (PT_INTERP) is not an absolute path")
            }
            result.interpreter = path
        }

        guard let dynamic else { return result }  // statically linked
        guard dynamic.fileSize <= UInt64(maximumDynamicBytes) else { throw failure("its dynamic section is \(dynamic.fileSize) bytes long") }
        let entries = try exactly(dynamic.offset, Int(dynamic.fileSize) / 16 * 16, "dynamic section")
        var stringTableAddress: UInt64?
        var stringTableSize: UInt64?
        var needed: [UInt64] = []
        var runPathsOld: [UInt64] = []
        var runPaths: [UInt64] = []
        var offset = 0
        while offset + 16 <= entries.count {
            let tag = entries.u64(offset)
            let value = entries.u64(offset + 8)
            offset += 16
            switch tag {
            case 0: offset = entries.count             // DT_NULL
            case 1: needed.append(value)               // DT_NEEDED
            case 5: stringTableAddress = value         // DT_STRTAB
            case 10: stringTableSize = value           // DT_STRSZ
            case 15: runPathsOld.append(value)         // DT_RPATH
            case 29: runPaths.append(value)            // DT_RUNPATH
            default: break
            }
        }
        if needed.isEmpty && runPathsOld.isEmpty && runPaths.isEmpty { return result }
        guard let address = stringTableAddress, let size = stringTableSize else {
            throw failure("its dynamic section names libraries but has no string table")
        }
        // DT_STRTAB is a virtual address: find the loaded segment that holds it.
        guard let segment = loads.first(where: { address >= $0.address && address - $0.address < $0.fileSize }) else {
            throw failure("its string table lies outside every loaded segment")
        }
        let (tableOffset, overflow) = segment.offset.addingReportingOverflow(address - segment.address)
        guard !overflow else { throw failure("its string table offset overflows") }
        let available = min(size, segment.fileSize - (address - segment.address))

        func string(_ index: UInt64) throws -> String {
            guard index < available else { throw failure("a string offset (\(index)) lies outside its string table") }
            let count = Int(min(UInt64(maximumStringBytes), available - index))
            let (at, overflow) = tableOffset.addingReportingOverflow(index)
            guard !overflow else { throw failure("a string offset overflows") }
            let bytes = try read(at, count)
            guard let end = bytes.firstIndex(of: 0) else { throw failure("a string in its string table is unterminated or too long") }
            guard let text = String(validating: bytes[..<end], as: UTF8.self), !text.isEmpty else {
                throw failure("a library name in its string table is empty or not UTF-8")
            }
            return text
        }
        result.needed = try needed.map(string)
        result.runPathsOld = try runPathsOld.flatMap { try string($0).split(separator: ":").map(String.init) }
        result.runPaths = try runPaths.flatMap { try string($0).split(separator: ":").map(String.init) }
        return result
    }
}

extension [UInt8] {
    /// Little-endian reads; callers have checked that the bytes are there.
    fileprivate func u16(_ at: Int) -> UInt16 { UInt16(self[at]) | UInt16(self[at + 1]) << 8 }
    fileprivate func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(self[at + $1]) << (8 * $1) } }
    fileprivate func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(self[at + $1]) << (8 * $1) } }
}
