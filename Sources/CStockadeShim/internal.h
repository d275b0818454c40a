// Shared by the shim's C files; not part of the Swift-visible interface.
#ifndef STOCKADE_SHIM_INTERNAL_H
#define STOCKADE_SHIM_INTERNAL_H

#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "stockade_shim.h"

// System call numbers (x86_64 and aarch64 share these) for calls glibc 2.36 wraps
// poorly or not at all; defined here so the shim builds on older headers too.
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

#define STOCKADE_OPEN_TREE_CLONE 1
#define STOCKADE_AT_RECURSIVE 0x8000
#define STOCKADE_AT_EMPTY_PATH 0x1000
#define STOCKADE_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define STOCKADE_MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#define STOCKADE_MOUNT_ATTR_RDONLY 0x00000001
#define STOCKADE_MOUNT_ATTR_NOSUID 0x00000002
#define STOCKADE_MOUNT_ATTR_NODEV 0x00000004
#define STOCKADE_MOUNT_ATTR_NOEXEC 0x00000008
#define STOCKADE_MOUNT_ATTR_IDMAP 0x00100000
#define STOCKADE_RESOLVE_NO_MAGICLINKS 0x02
#define STOCKADE_RESOLVE_NO_SYMLINKS 0x04
#define STOCKADE_RESOLVE_BENEATH 0x08
#define STOCKADE_CLOSE_RANGE_CLOEXEC (1U << 2)

struct stockade_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

struct stockade_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

/// Reports `what` + `path` and the errno to the supervisor, then exits the child.
/// Async-signal-safe.
__attribute__((noreturn)) void stockade_child_fail(const char *_Nonnull what, const char *_Nullable path, int error_number);

/// Carries out the mount plan and pivots into the new root (child side).
void stockade_child_build_root(const struct stockade_spawn_config *_Nonnull config);

/// Drops privileges and installs Landlock, rlimits and seccomp (child side).
void stockade_child_drop_privileges(const struct stockade_spawn_config *_Nonnull config);
void stockade_child_apply_landlock(const struct stockade_spawn_config *_Nonnull config);
void stockade_child_apply_rlimits(const struct stockade_spawn_config *_Nonnull config);
void stockade_child_apply_seccomp(const struct stockade_spawn_config *_Nonnull config);

/// Async-signal-safe string helpers.
size_t stockade_strlcpy(char *_Nonnull dst, const char *_Nonnull src, size_t size);
size_t stockade_strlcat(char *_Nonnull dst, const char *_Nonnull src, size_t size);

#endif
