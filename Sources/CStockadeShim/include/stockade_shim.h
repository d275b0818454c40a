// The child side of spawning a sandbox, in C because nothing written in Swift runs
// safely between clone() and exec(): after the clone only this code runs in the child,
// and it calls nothing but system calls and async-signal-safe helpers.
//
// The Swift side (StockadeSystem) fills a `stockade_spawn_config`, calls
// `stockade_spawn`, writes the child's uid/gid maps, moves it into its cgroups and then
// releases it through the sync pipe. Field names mirror the Swift types they come from.
#ifndef STOCKADE_SHIM_H
#define STOCKADE_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// Swift sees no CLONE_NEW* constants (glibc hides them behind __USE_GNU).
#define STOCKADE_CLONE_NEWNS     0x00020000ULL
#define STOCKADE_CLONE_NEWCGROUP 0x02000000ULL
#define STOCKADE_CLONE_NEWUTS    0x04000000ULL
#define STOCKADE_CLONE_NEWIPC    0x08000000ULL
#define STOCKADE_CLONE_NEWUSER   0x10000000ULL
#define STOCKADE_CLONE_NEWPID    0x20000000ULL
#define STOCKADE_CLONE_NEWNET    0x40000000ULL

/// RLIMIT_NPROC, which glibc hides from Swift behind __USE_MISC.
#define STOCKADE_RLIMIT_NPROC 6

/// O_PATH and AT_EMPTY_PATH, hidden from Swift behind __USE_GNU.
#define STOCKADE_O_PATH 010000000
#define STOCKADE_AT_EMPTY_PATH_FLAG 0x1000

/// One step of building the sandbox root; mirrors Swift's `MountOperation`.
enum stockade_mount_kind {
    STOCKADE_MOUNT_DIRECTORY = 1,
    STOCKADE_MOUNT_FILE = 2,
    STOCKADE_MOUNT_SYMLINK = 3,
    STOCKADE_MOUNT_BIND = 4,
    STOCKADE_MOUNT_DEVICE = 5,
    STOCKADE_MOUNT_TMPFS = 6,
    STOCKADE_MOUNT_PROC = 7,
    STOCKADE_MOUNT_DEVPTS = 8,
    STOCKADE_MOUNT_READONLY = 9,
    STOCKADE_MOUNT_MASK = 10,
    STOCKADE_MOUNT_READONLY_BENEATH = 11,
    STOCKADE_MOUNT_PIN_BENEATH = 12,
};

struct stockade_mount_op {
    int kind;
    /// Sandbox path (absolute), or for MASK the base directory inside the sandbox.
    const char *_Nullable path;
    /// Host path for BIND/DEVICE, link target for SYMLINK, contents for FILE,
    /// path relative to `path` for MASK, READONLY_BENEATH and PIN_BENEATH; NULL otherwise.
    const char *_Nullable source;
    size_t source_length;
    unsigned int mode;
    int read_only;
    /// For BIND: a detached mount tree (open_tree) prepared by the supervisor, attached
    /// instead of binding `source` (used for idmapped workspaces); -1 otherwise.
    int tree_fd;
    uint64_t size_bytes;
    uint64_t inodes;
    /// For TMPFS: make its root owned by the sandbox user.
    int owned_by_user;
};

struct stockade_landlock_rule {
    const char *_Nullable path;
    uint64_t access;
};

struct stockade_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

struct stockade_spawn_config {
    const struct stockade_mount_op *_Nullable mounts;
    size_t mount_count;

    /// Landlock: 0 means not available (then the rules are ignored).
    int landlock_abi;
    uint64_t landlock_handled_fs;
    uint64_t landlock_scoped;
    const struct stockade_landlock_rule *_Nullable landlock_rules;
    size_t landlock_rule_count;

    const struct stockade_rlimit *_Nullable rlimits;
    size_t rlimit_count;

    /// Raw BPF (struct sock_filter[]), from libseccomp in the supervisor.
    const unsigned char *_Nullable seccomp_program;
    size_t seccomp_length;

    const char *_Nullable hostname;
    const char *_Nullable working_directory;
    /// argv and envp for stockade-init; NULL-terminated.
    char *_Nullable const *_Nullable init_argv;
    char *_Nullable const *_Nullable init_envp;
    /// An executable fd of stockade-init (a sealed memfd copy), run with execveat.
    int init_fd;

    int stdin_fd, stdout_fd, stderr_fd;
    /// Becomes fd 3 in stockade-init: its status channel and the supervisor lifeline.
    int status_fd;
    /// Read end: the supervisor writes one byte once maps and cgroups are in place.
    int sync_fd;
    /// The supervisor's write end of that pipe, which the child closes first: were the
    /// child to keep its copy, a supervisor killed before the byte would leave the child
    /// waiting forever instead of reading EOF.
    int sync_write_fd;
    /// Write end (close-on-exec): a failed child writes a `stockade_child_error` here.
    /// EOF without data means exec succeeded.
    int error_fd;

    /// Identity inside the user namespace (never 0).
    unsigned int uid, gid;
    /// Root mode: the namespace maps uid/gid 0 (to an unprivileged host id), and the
    /// child switches to it for the set-up (files it creates need a mapped owner), and
    /// may call setgroups(2) to clear the supplementary groups inherited from the caller.
    int privileged;
    /// Size of the tmpfs that becomes the sandbox root.
    uint64_t root_size_bytes;

    /// The egress bridge: when `proxy_port` is not 0, the child opens a TCP listener on
    /// 127.0.0.1:`proxy_port` inside the sandbox's network namespace, before anything
    /// of the sandbox runs, and sends it over `proxy_channel_fd` (a unix socket) to the
    /// supervisor, whose proxy then accepts on it. The child keeps no copy.
    int proxy_port;
    int proxy_channel_fd;
};

/// What a failed child reports before exiting.
struct stockade_child_error {
    int32_t error_number;
    char what[500];
};

/// Clones the sandbox's first process (new user, mount, PID, network, IPC and UTS
/// namespaces; the cgroup namespace follows after the supervisor has moved it into its
/// cgroups). Returns the child's pid, or -errno. `*pidfd` receives a pidfd for it.
/// Call with every fd in `config` open. The child works on its own (copy-on-write)
/// snapshot of `config`, so the caller may free it once this returns. Needs Linux 5.12
/// (clone3, openat2, the new mount API and mount_setattr).
pid_t stockade_spawn(const struct stockade_spawn_config *_Nonnull config, int *_Nonnull pidfd);

/// Starts a helper program (a runtime such as runsc) as a plain child, without new
/// namespaces: fds 0, 1 and 2 become `stdio[0..2]` and every other fd is closed. It waits until one byte arrives on
/// `gate_fd` (so the caller can move it into a cgroup first; end of file means give up),
/// then executes `path`. Returns the pid (and a pidfd in `*pidfd`), or -errno. A failed
/// exec ends the child with status 127.
pid_t stockade_spawn_helper(const char *_Nonnull path, char *_Nullable const *_Nonnull argv,
                            char *_Nullable const *_Nonnull envp, const int *_Nonnull stdio, int gate_fd,
                            int *_Nonnull pidfd);

/// Receives one descriptor sent with SCM_RIGHTS on `socket` (without waiting).
/// Returns it (close-on-exec), or -errno (-EAGAIN when none is queued).
int stockade_receive_fd(int socket);

/// Returns a user-namespace fd whose uid and gid maps are "inside outside 1" for each,
/// for idmapped mounts, or -errno. Costs one short-lived child process.
int stockade_idmap_userns(unsigned int inside_uid, unsigned int outside_uid,
                          unsigned int inside_gid, unsigned int outside_gid);

/// open_tree(OPEN_TREE_CLONE|AT_RECURSIVE) of `path` with an idmapping from `userns_fd`
/// applied (and nosuid/nodev, plus rdonly when asked). Returns the tree fd or -errno.
int stockade_idmapped_tree(const char *_Nonnull path, int userns_fd, int read_only);

/// open_tree(OPEN_TREE_CLONE|AT_RECURSIVE) of `path`, made read-only, nosuid and nodev,
/// without an idmapping: for directories the sandbox's set-up user may not traverse to
/// (a toolset root in a 0700 cache). No symlink on `path` is followed. Returns the tree
/// fd or -errno.
int stockade_detached_tree(const char *_Nonnull path);

/// The Landlock ABI version of the running kernel, or -errno when Landlock is absent.
int stockade_landlock_abi(void);

/// A sealed, close-on-exec memfd holding a copy of the executable at `path`, or -errno.
/// Sealed against writes, so a sandboxed process that reaches it through /proc/1/exe
/// cannot change what the next sandbox runs (CVE-2019-5736).
int stockade_sealed_executable(const char *_Nonnull path);

/// openat2(2) relative to `dirfd`, confined beneath it (RESOLVE_BENEATH) and following no
/// magic link; symlinks that stay beneath it are followed only when `follow_symlinks`
/// is set. O_CLOEXEC is added to `flags`. Returns the fd or -errno (-EXDEV for an
/// escape, -ELOOP for a symlink where none may be followed).
int stockade_open_beneath(int dirfd, const char *_Nonnull path, int flags, unsigned int mode, int follow_symlinks);

/// Gives the calling thread alone (raw system calls, not glibc's process-wide
/// wrappers) the credentials of uid/gid with no supplementary groups, for good: file
/// work done for a sandbox then has exactly that user's permissions, and a root
/// supervisor's capabilities are gone from this thread. Returns 0 or -errno.
int stockade_thread_become(unsigned int uid, unsigned int gid);

/// pipe2(O_CLOEXEC), which Swift does not see. Returns 0 or -errno.
int stockade_cloexec_pipe(int *_Nonnull fds);

/// A close-on-exec signalfd for these signals (which the caller has blocked), or -errno.
int stockade_signalfd(const int *_Nonnull signals, int count);

/// Reads one signal from a signalfd: its number, or -errno.
int stockade_signalfd_read(int fd);

/// pidfd_send_signal(2). Returns 0 or -errno.
int stockade_pidfd_send_signal(int pidfd, int signal);

#endif
