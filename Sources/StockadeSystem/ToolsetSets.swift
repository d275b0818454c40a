import Foundation

/// A name in a toolset that stands for several programs and the directories they need.
///
/// A name that is both a set and a program (`git`) means the set: the program alone
/// would be missing the helpers it runs.
public struct ToolsetSet: Sendable {
    public var name: String
    /// Programs that must exist on the host.
    public var programs: [String]
    /// Programs taken when the host has them.
    public var optionalPrograms: [String]
    /// Directories taken whole when the host has them.
    public var directories: [String]

    /// The named sets: `coreutils`, `python` (alias `python3`), `git`, `build-essential`.
    public static func named(_ name: String) -> ToolsetSet? {
        switch name {
        case "coreutils":
            return ToolsetSet(name: name, programs: [], optionalPrograms: coreutilsPrograms, directories: ["/usr/libexec/coreutils"])
        case "python", "python3":
            // The interpreter brings its standard library (see `ToolsetResolver`), so that
            // `python3` named as a program works just the same.
            return ToolsetSet(name: name, programs: ["python3"], optionalPrograms: [], directories: [])
        case "git":
            // git runs the helpers in git-core, several of which are shell scripts, and
            // runs hooks and aliases through sh.
            return ToolsetSet(name: name, programs: ["git", "sh"], optionalPrograms: [], directories: ["/usr/lib/git-core", "/usr/share/git-core"])
        case "build-essential":
            // make runs recipes through sh; the compiler's own directories and the C
            // library's development files are added by the resolver (they depend on the
            // compiler's version and the host's multiarch directory).
            return ToolsetSet(
                name: name, programs: ["gcc", "make", "as", "ld", "ar", "sh"],
                optionalPrograms: ["cc", "g++", "c++", "cpp", "ranlib", "nm", "strip", "objdump"],
                directories: ["/usr/include"]
            )
        default:
            return nil
        }
    }

    /// The names `named(_:)` knows.
    public static let names = ["coreutils", "python", "git", "build-essential"]

    /// The programs of GNU coreutils; the set takes those the host has.
    static let coreutilsPrograms = [
        "[", "arch", "b2sum", "base32", "base64", "basename", "basenc", "cat", "chcon", "chgrp", "chmod", "chown",
        "chroot", "cksum", "comm", "cp", "csplit", "cut", "date", "dd", "df", "dir", "dircolors", "dirname", "du",
        "echo", "env", "expand", "expr", "factor", "false", "fmt", "fold", "groups", "head", "hostid", "id",
        "install", "join", "link", "ln", "logname", "ls", "md5sum", "mkdir", "mkfifo", "mknod", "mktemp", "mv",
        "nice", "nl", "nohup", "nproc", "numfmt", "od", "paste", "pathchk", "pinky", "pr", "printenv", "printf",
        "ptx", "pwd", "readlink", "realpath", "rm", "rmdir", "runcon", "seq", "sha1sum", "sha224sum", "sha256sum",
        "sha384sum", "sha512sum", "shred", "shuf", "sleep", "sort", "split", "stat", "stdbuf", "stty", "sum",
        "sync", "tac", "tail", "tee", "test", "timeout", "touch", "tr", "true", "truncate", "tsort", "tty", "uname",
        "unexpand", "uniq", "unlink", "users", "vdir", "wc", "who", "whoami", "yes",
    ]

    /// Glibc's development libraries a link needs: the `.so` (a linker script or a link),
    /// the static archive and the `_nonshared` archive of each, when present.
    static let cLibraryNames = ["c", "m", "mvec", "pthread", "dl", "rt", "util", "resolv", "anl"]
}
