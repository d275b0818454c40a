import Foundation
import StockadeCore

/// The state of one resolution: the entries found so far and the ELF files already
/// followed. Used by one thread, inside `ToolsetResolver.resolve`.
struct Resolution {
    var locator: LibraryLocator
    var entries: [String: ToolsetEntry] = [:]
    var warnings: [String] = []
    private var followedObjects = Set<String>()
    private var takenDirectories = Set<String>()

    /// Deepest chain of `#!` interpreters followed (the kernel allows four).
    static let maximumInterpreterDepth = 4
    /// Most entries one set directory may bring (a guard against a runaway tree).
    static let maximumDirectoryEntries = 200_000

    init(locator: LibraryLocator) {
        self.locator = locator
    }

    // MARK: Names and sets

    mutating func add(name: String) throws {
        try ToolsetResolver.validate(name)
        if let set = ToolsetSet.named(name) {
            try add(set: set)
            return
        }
        guard let found = ToolsetResolver.findProgram(name) else { throw ToolsetResolver.notFound(name, for: "toolset program") }
        try addProgram(found, reason: ToolsetReason(.program, name), depth: 0)
    }

    mutating func add(set: ToolsetSet) throws {
        for program in set.programs {
            guard let found = ToolsetResolver.findProgram(program) else {
                throw StockadeError(.invalidPolicy, "failed to resolve toolset set '\(set.name)': it needs the program '\(program)', which is not installed on this host (searched \(ToolsetResolver.searchPath.joined(separator: ":"))). Install it or name the programs you need one by one")
            }
            try addProgram(found, reason: ToolsetReason(.program, "\(program) (set \(set.name))"), depth: 0)
        }
        for program in set.optionalPrograms {
            guard let found = ToolsetResolver.findProgram(program) else { continue }
            try addProgram(found, reason: ToolsetReason(.program, "\(program) (set \(set.name))"), depth: 0)
        }
        for directory in set.directories where FileStatus.of(directory, follow: true)?.isDirectory == true {
            try addDirectory(directory, because: "part of set \(set.name)")
        }
        if set.name == "build-essential" { try addCompilerSupport() }
    }

    // MARK: Programs, scripts and ELF files

    /// Adds a program (and what it needs to run): its links, the file, its loader and
    /// libraries or its `#!` interpreter.
    mutating func addProgram(_ path: String, reason: ToolsetReason, depth: Int) throws {
        let final = try addPath(path, reason: reason, strict: true)
        try addRunRequirements(of: final, depth: depth, strict: true)
    }

    /// What running or loading `path` needs: for ELF files, the loader and libraries; for
    /// scripts, the interpreter. `strict` makes a problem an error (for what the toolset
    /// names) rather than a warning (for files in set directories).
    mutating func addRunRequirements(of path: String, depth: Int, strict: Bool) throws {
        let head = Self.readHead(path, count: 256)
        if ELFReader.hasMagic(head) {
            try addObject(path, strict: strict, inherited: [])
            addInterpreterSupport(path)
        } else if head.starts(with: [0x23, 0x21]), strict {  // "#!"
            try addScriptInterpreter(of: path, head: head, depth: depth)
        }
    }

    /// A script's interpreter: `#!/bin/sh` brings sh; `#!/usr/bin/env python3` brings env
    /// and python3 from the search path.
    mutating func addScriptInterpreter(of script: String, head: [UInt8], depth: Int) throws {
        guard depth < Self.maximumInterpreterDepth else {
            throw StockadeError(.invalidPolicy, "failed to resolve the interpreter of \(script): more than \(Self.maximumInterpreterDepth) nested '#!' interpreters. Name the final interpreter in the toolset")
        }
        let line = head.dropFirst(2).prefix { $0 != 0x0A }
        let words = String(decoding: line, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let interpreter = words.first, interpreter.hasPrefix("/") else {
            throw StockadeError(.invalidPolicy, "failed to resolve the interpreter of \(script): its '#!' line names no absolute path. Fix the script or name its interpreter in the toolset")
        }
        let reason = ToolsetReason(.interpreter, script)
        guard FileStatus.of(interpreter, follow: true)?.isRegular == true else {
            throw StockadeError(.invalidPolicy, "failed to resolve the interpreter of \(script): \(interpreter) does not exist on this host. Install it or fix the script")
        }
        try addProgram(interpreter, reason: reason, depth: depth + 1)
        guard PathWalk.name(of: interpreter) == "env" else { return }
        // env's first word that is not an option is the program it runs (`-S` splits
        // the rest of the line into words, which the split above already did).
        guard let program = words.dropFirst().first(where: { !$0.hasPrefix("-") }) else { return }
        guard let found = ToolsetResolver.findProgram(program) else {
            throw ToolsetResolver.notFound(program, for: "the interpreter of \(script)")
        }
        try addProgram(found, reason: reason, depth: depth + 1)
    }

    /// An ELF file's loader and, recursively, its libraries. `inherited` holds the
    /// `DT_RPATH` directories of the objects that loaded it (already expanded).
    mutating func addObject(_ path: String, strict: Bool, inherited: [String]) throws {
        guard followedObjects.insert(path).inserted else { return }
        let dependencies: ELFDependencies
        do {
            dependencies = try locator.dependencies(of: path)
        } catch let error as StockadeError {
            if strict { throw error }
            return  // a 32-bit object or a stray file in a set directory: nothing to follow
        }
        guard dependencies.fileType == 2 || dependencies.fileType == 3 else { return }
        if let loader = dependencies.interpreter {
            guard FileStatus.of(loader, follow: true)?.isRegular == true else {
                if strict {
                    throw StockadeError(.invalidPolicy, "failed to resolve the dynamic loader of \(path): \(loader) does not exist on this host. The program cannot run here either")
                }
                warnings.append("\(path) needs the loader \(loader), which this host lacks")
                return
            }
            _ = try addPath(loader, reason: ToolsetReason(.interpreter, path), strict: true)
        }
        let origin = PathWalk.directory(of: path)
        let ownOld = dependencies.runPathsOld.compactMap { LibraryLocator.expand($0, origin: origin) }
        let ownNew = dependencies.runPaths.compactMap { LibraryLocator.expand($0, origin: origin) }
        let searched = ownNew.isEmpty ? ownOld + inherited : ownNew
        for name in dependencies.needed {
            guard let found = locator.locate(name, machine: dependencies.machine, directories: searched) else {
                if strict {
                    throw StockadeError(.invalidPolicy, "failed to resolve the libraries of \(path): it needs \(name), which the dynamic loader would not find on this host either. Install the library or leave the program out")
                }
                warnings.append("\(path) needs \(name), which this host lacks; it will not run inside")
                continue
            }
            let final = try addPath(found, reason: ToolsetReason(.library, path), strict: true)
            try addObject(final, strict: strict, inherited: ownOld + inherited)
            addLibrarySupport(final)
        }
    }

    // MARK: Paths

    /// Adds the file at `path` and every symbolic link on the way to it; returns the
    /// resolved path. Links inside the system directories are kept as the host has them;
    /// a chain that passes outside (through /etc/alternatives, say) is replaced by one
    /// link straight to the resolved file, since those outside places are not in the
    /// sandbox.
    @discardableResult
    mutating func addPath(_ path: String, reason: ToolsetReason, strict: Bool) throws -> String {
        guard let walk = PathWalk.walk(path) else {
            throw StockadeError(.invalidPolicy, "failed to resolve \(path) for the toolset: a component is missing or there are too many symbolic links. Check the host's installation")
        }
        guard PathWalk.isSystemPath(walk.final) else {
            throw StockadeError(.invalidPolicy, "failed to resolve \(path) for the toolset: it lies in \(walk.final), outside the system directories a toolset may hold (/\(ToolsetResolver.systemDirectories.sorted().joined(separator: ", /"))). Install it under /usr or /opt")
        }
        guard let status = FileStatus.of(walk.final) else {
            throw StockadeError(.invalidPolicy, "failed to resolve \(path) for the toolset: \(walk.final) vanished while it was read. Try again")
        }
        guard status.isRegular || status.isDirectory else {
            throw StockadeError(.invalidPolicy, "failed to resolve \(path) for the toolset: \(walk.final) is not a regular file. Name a program")
        }
        if status.isRegular { record(walk.final, status: status, kind: .file, reason: reason, checked: true) }
        addLinks(of: walk, reason: ToolsetReason(.link, walk.final))
        return walk.final
    }

    /// Places the links of a walk, as described at `addPath`.
    mutating func addLinks(of walk: PathWalk, reason: ToolsetReason) {
        for (index, link) in walk.links.enumerated() where PathWalk.isSystemPath(link.path) {
            let leaves = walk.links[(index + 1)...].contains { !PathWalk.isSystemPath($0.path) }
            guard let status = FileStatus.of(link.path) else { continue }
            record(link.path, status: status, kind: .symlink, reason: reason, checked: true, target: leaves ? walk.final : link.target)
        }
    }

    mutating func record(_ path: String, status: FileStatus, kind: ToolsetEntry.Kind, reason: ToolsetReason, checked: Bool, target: String? = nil) {
        guard entries[path] == nil, !path.unicodeScalars.contains(where: { $0.value < 0x20 }) else { return }
        entries[path] = ToolsetEntry(
            path: path, kind: kind, linkTarget: target, reason: reason, device: status.device, inode: status.inode,
            size: status.size, modifiedSeconds: status.modifiedSeconds, modifiedNanoseconds: status.modifiedNanoseconds,
            mode: status.mode, checkedOnHit: checked
        )
    }

    /// Adds a directory whole: every file, link and subdirectory in it, with the loader
    /// and libraries of the ELF files among them (python's compiled modules, git's
    /// helpers). `#!` lines in it are not followed: a standard library holds scripts for
    /// interpreters nobody asked for.
    mutating func addDirectory(_ path: String, because: String, excluding excluded: (String) -> Bool = { _ in false }) throws {
        guard let walk = PathWalk.walk(path), PathWalk.isSystemPath(walk.final), let status = FileStatus.of(walk.final), status.isDirectory else {
            throw StockadeError(.invalidPolicy, "failed to take directory \(path) into the toolset: it is missing or outside the system directories. Check the host's installation")
        }
        guard takenDirectories.insert(walk.final).inserted else { return }
        addLinks(of: walk, reason: ToolsetReason(.link, walk.final))
        let root = walk.final
        record(root, status: status, kind: .directory, reason: ToolsetReason(.directory, because), checked: true)
        var pending = [root]
        var count = 0
        var objects: [String] = []
        var outsideLinks: [String] = []
        while let directory = pending.popLast() {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { continue }
            for name in names.sorted() where directory != root || !excluded(name) {
                count += 1
                guard count <= Self.maximumDirectoryEntries else {
                    throw StockadeError(.invalidPolicy, "failed to take directory \(root) into the toolset: it holds more than \(Self.maximumDirectoryEntries) entries. Name the programs you need instead")
                }
                let child = directory + "/" + name
                guard let childStatus = FileStatus.of(child) else { continue }
                let reason = ToolsetReason(.member, because, directory: root)
                if childStatus.isDirectory {
                    // Directories are checked on a hit: files are replaced by rename.
                    record(child, status: childStatus, kind: .directory, reason: reason, checked: true)
                    pending.append(child)
                } else if childStatus.isRegular {
                    record(child, status: childStatus, kind: .file, reason: reason, checked: false)
                    if childStatus.mode & 0o111 != 0 || name.contains(".so") { objects.append(child) }
                } else if childStatus.isSymlink, let target = try? FileManager.default.destinationOfSymbolicLink(atPath: child) {
                    record(child, status: childStatus, kind: .symlink, reason: reason, checked: false, target: target)
                    outsideLinks.append(child)
                }
            }
        }
        for object in objects where ELFReader.hasMagic(Self.readHead(object, count: 4)) {
            try addObject(object, strict: false, inherited: [])
        }
        // A link out of the directory (gcc's libstdc++.so to the real library) brings its
        // target when that is a file in the system directories; others stay dangling, as
        // they would be in the sandbox anyway (/etc is synthesized).
        for link in outsideLinks {
            guard let walk = PathWalk.walk(link), !walk.final.hasPrefix(root + "/"), PathWalk.isSystemPath(walk.final),
                  FileStatus.of(walk.final)?.isRegular == true else { continue }
            _ = try addPath(link, reason: ToolsetReason(.support, "target of the link \(link)"), strict: false)
            try addObject(walk.final, strict: false, inherited: [])
        }
    }

    static func readHead(_ path: String, count: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, count) }
        return got > 0 ? Array(bytes[0..<got]) : []
    }
}
