import Foundation
import StockadeCore

/// Files that programs need without naming them in their ELF headers: an interpreter's
/// standard library, a library's configuration, a compiler's own directories. Each is
/// added because of something already in the closure, and says so.
extension Resolution {
    /// A python interpreter (`python3.X` after its links) brings its standard library,
    /// `<prefix>/lib/python3.X` with `lib-dynload`: found from the file name, without
    /// running anything. Third-party packages (`dist-packages`, `site-packages`) are left
    /// out, as is `config-3.X-<triplet>` (static libraries for embedding python): name
    /// them with `read_only` in the policy if a sandbox needs them.
    mutating func addInterpreterSupport(_ path: String) {
        let name = PathWalk.name(of: path)
        guard name.hasPrefix("python"), let version = Self.pythonVersion(name) else { return }
        let prefix = PathWalk.directory(of: PathWalk.directory(of: path))
        let library = prefix + "/lib/python" + version
        if FileStatus.of(library, follow: true)?.isDirectory == true {
            do {
                // Packages installed beside the standard library are not part of it, nor
                // are the static libraries for embedding python (config-3.X-<triplet>).
                try addDirectory(library, because: "standard library of \(name)") { entry in
                    entry == "dist-packages" || entry == "site-packages" || entry.hasPrefix("config-")
                }
            } catch {
                warnings.append("the standard library of \(path) could not be taken: \(error)")
            }
        } else {
            warnings.append("\(path) has no standard library at \(library); it will not start inside")
        }
    }

    /// "3.11" for "python3.11"; nil for names that carry no version.
    static func pythonVersion(_ name: String) -> String? {
        let version = name.dropFirst("python".count)
        let parts = version.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) else { return nil }
        return String(version)
    }

    /// The C library brings the C.UTF-8 locale (the sandbox's default `LANG`); OpenSSL's
    /// libcrypto brings its configuration directory (`/usr/lib/ssl`), whose links to the
    /// CA certificates resolve inside the sandbox, which binds `/etc/ssl/certs`.
    mutating func addLibrarySupport(_ path: String) {
        let name = PathWalk.name(of: path)
        var directories: [(String, String)] = []
        if name == "libc.so.6" {
            for locale in ["/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"] {
                directories.append((locale, "the C.UTF-8 locale of \(name)"))
            }
        }
        if name.hasPrefix("libcrypto.so") {
            directories.append(("/usr/lib/ssl", "the configuration of \(name)"))
        }
        for (directory, because) in directories where FileStatus.of(directory, follow: true)?.isDirectory == true {
            do {
                try addDirectory(directory, because: because)
            } catch {
                warnings.append("\(directory) could not be taken: \(error)")
            }
        }
    }

    /// What gcc needs beyond its ELF dependencies: its version's directories under
    /// `/usr/lib/gcc` and `/usr/libexec/gcc` (cc1, collect2, crtbegin.o, libgcc), the C
    /// start files (crt1.o, crti.o, crtn.o), the C library's linker scripts and what they
    /// name, and binutils' LTO plugin.
    mutating func addCompilerSupport() throws {
        guard let gcc = ToolsetResolver.findProgram("gcc"), let walk = PathWalk.walk(gcc),
              let machine = try? locator.dependencies(of: walk.final).machine else { return }
        // Debian names the driver <triplet>-gcc-<version>; elsewhere take every version.
        let name = PathWalk.name(of: walk.final)
        var triplet: String?
        var version: String?
        if let range = name.range(of: "-gcc-") {
            triplet = String(name[..<range.lowerBound])
            version = String(name[range.upperBound...])
        }
        var libraryDirectories: [String] = []
        for base in ["/usr/lib/gcc", "/usr/libexec/gcc"] {
            for target in Self.subdirectories(base) where triplet == nil || target == triplet {
                for found in Self.subdirectories(base + "/" + target) where version == nil || found == version {
                    try addDirectory(base + "/" + target + "/" + found, because: "the compiler's own files (set build-essential)")
                }
                if !libraryDirectories.contains("/usr/lib/" + target) { libraryDirectories.append("/usr/lib/" + target) }
            }
        }
        if libraryDirectories.isEmpty, let triplet { libraryDirectories.append("/usr/lib/" + triplet) }
        for directory in libraryDirectories {
            for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where file.hasSuffix(".o") && file.contains("crt") {
                try addSupportFile(directory + "/" + file, because: "C start file (set build-essential)")
            }
            for library in ToolsetSet.cLibraryNames {
                for file in ["lib\(library).so", "lib\(library).a", "lib\(library)_nonshared.a"] {
                    let path = directory + "/" + file
                    guard FileStatus.of(path, follow: true)?.isRegular == true else { continue }
                    try addSupportFile(path, because: "C library for linking (set build-essential)")
                }
            }
        }
        // Linker scripts (libc.so, gcc's libgcc_s.so) name the files the linker opens.
        for entry in entries.values where entry.kind == .file && PathWalk.name(of: entry.path).hasSuffix(".so") {
            try addLinkerScriptInputs(entry.path, machine: machine)
        }
        let plugin = "/usr/lib/bfd-plugins/liblto_plugin.so"
        if FileStatus.of(plugin, follow: true)?.isRegular == true {
            try addSupportFile(plugin, because: "the linker's LTO plugin (set build-essential)")
        }
    }

    mutating func addSupportFile(_ path: String, because: String) throws {
        let final = try addPath(path, reason: ToolsetReason(.support, because), strict: true)
        if ELFReader.hasMagic(Self.readHead(final, count: 4)) { try addObject(final, strict: false, inherited: []) }
    }

    /// The inputs a GNU ld script names: absolute paths, and bare file names looked up
    /// beside the script and in the loader's default directories. `-l` options are left
    /// to the linker's search (their archives are in the directories already taken).
    mutating func addLinkerScriptInputs(_ path: String, machine: UInt16) throws {
        let head = Self.readHead(path, count: 4096)
        guard !head.isEmpty, !ELFReader.hasMagic(head), let text = String(validating: head, as: UTF8.self),
              text.contains("GROUP") || text.contains("INPUT") else { return }
        var words = text.components(separatedBy: CharacterSet(charactersIn: " \t\n()"))
        // Comments are /* ... */; drop what lies between them.
        var inComment = false
        words = words.filter { word in
            if word.hasPrefix("/*") { inComment = true }
            defer { if word.hasSuffix("*/") { inComment = false } }
            return !inComment && !word.hasSuffix("*/")
        }
        for word in words where word.contains(".so") || word.hasSuffix(".a") {
            var candidates: [String] = []
            if word.hasPrefix("/") {
                candidates = [word]
            } else if !word.hasPrefix("-"), !word.contains("/") {
                candidates = [PathWalk.directory(of: path)] + LibraryLocator.defaultDirectories(machine: machine)
                candidates = candidates.map { $0 + "/" + word }
            }
            if let found = candidates.first(where: { FileStatus.of($0, follow: true)?.isRegular == true }) {
                try addSupportFile(found, because: "named by the linker script \(path)")
            }
        }
    }

    static func subdirectories(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter {
            FileStatus.of(path + "/" + $0, follow: true)?.isDirectory == true
        }.sorted()
    }
}
