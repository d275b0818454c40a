import Foundation
import StockadePolicy

/// Finds the workspace entries that hidden globs match, without following symlinks
/// (a symlink's target is either hidden itself or outside the grant).
enum WorkspaceScanner {
    static func hiddenEntries(in root: String, matching globs: GlobSet) -> [String] {
        var found: [String] = []
        var pending: [String] = [""]
        while let relative = pending.popLast() {
            let directory = relative.isEmpty ? root : root + "/" + relative
            guard let handle = opendir(directory) else { continue }
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                let path = relative.isEmpty ? name : relative + "/" + name
                var type = entry.pointee.d_type
                if type == UInt8(DT_UNKNOWN) {
                    var info = stat()
                    if lstat(root + "/" + path, &info) == 0 {
                        type = (info.st_mode & S_IFMT) == S_IFDIR ? UInt8(DT_DIR) : UInt8(DT_REG)
                    }
                }
                let isDirectory = type == UInt8(DT_DIR)
                if globs.matches(path, isDirectory: isDirectory) {
                    found.append(path)
                } else if isDirectory {
                    pending.append(path)
                }
            }
        }
        return found.sorted()
    }
}
