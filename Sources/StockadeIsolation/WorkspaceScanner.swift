import Foundation
import StockadePolicy
import StockadeSystem

/// Finds the workspace entries that hidden globs match, without following symlinks.
/// A matching symlink contributes its target instead, when that lies in the workspace
/// (`.env -> config/prod.env` hides config/prod.env); a target outside is not visible
/// in the sandbox anyway. The result holds no path through a symlink. It runs on every
/// start, so it works on raw directory entries and extends each parent's components by
/// one name instead of re-splitting paths.
enum WorkspaceScanner {
    private struct Pending {
        var relative: String
        var components: [[Unicode.Scalar]]
    }

    static func hiddenEntries(in root: String, matching globs: GlobSet) -> [String] {
        entries(in: root, matching: [globs])[0]
    }

    /// The entries each set matches, in one walk. The walk does not descend into an
    /// entry that any set matched (what lies below is hidden or protected with it).
    static func entries(in root: String, matching sets: [GlobSet]) -> [[String]] {
        var found = [[String]](repeating: [], count: sets.count)
        var pending = [Pending(relative: "", components: [])]
        while let directory = pending.popLast() {
            let path = directory.relative.isEmpty ? root : root + "/" + directory.relative
            guard let handle = opendir(path) else { continue }
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                let name = directoryEntryName(entry)
                if name == "." || name == ".." { continue }
                let relative = directory.relative.isEmpty ? name : directory.relative + "/" + name
                var type = entry.pointee.d_type
                if type == UInt8(DT_UNKNOWN) {
                    var info = stat()
                    if lstat(root + "/" + relative, &info) == 0 {
                        type = (info.st_mode & S_IFMT) == S_IFDIR ? UInt8(DT_DIR) : UInt8(DT_REG)
                    }
                }
                let isDirectory = type == UInt8(DT_DIR)
                var components = directory.components
                components.append(Array(name.unicodeScalars))
                var matched = false
                for (index, globs) in sets.enumerated() where globs.matches(components: components, isDirectory: isDirectory) {
                    matched = true
                    if type == UInt8(DT_LNK) {
                        if let target = resolvedInside(root: root, relative: relative) { found[index].append(target) }
                    } else {
                        found[index].append(relative)
                    }
                }
                if !matched && isDirectory {
                    pending.append(Pending(relative: relative, components: components))
                }
            }
        }
        return found.map { Array(Set($0)).sorted() }
    }

    /// The workspace-relative path a symlink resolves to, when it lies strictly inside.
    private static func resolvedInside(root: String, relative: String) -> String? {
        guard let resolved = realpath(root + "/" + relative, nil) else { return nil }
        defer { free(resolved) }
        let path = String(cString: resolved)
        guard path.hasPrefix(root + "/") else { return nil }
        return String(path.dropFirst(root.count + 1))
    }
}
