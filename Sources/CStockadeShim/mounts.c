// The sandbox root, built in the child's private mount namespace. The order follows
// bubblewrap's: stop propagation, put a scratch tmpfs at /tmp, pivot into it so the
// host root sits at /oldroot, build the new root at /newroot from /oldroot's files,
// drop /oldroot, pivot into /newroot and lazily unmount what was above it.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include "internal.h"

#define NEWROOT "/newroot"
#define OLDROOT "/oldroot"

static void join(char *buffer, const char *prefix, const char *path) {
    buffer[0] = '\0';
    if (stockade_strlcpy(buffer, prefix, PATH_MAX) >= PATH_MAX ||
        stockade_strlcat(buffer, path, PATH_MAX) >= PATH_MAX) {
        stockade_child_fail("build a path: too long:", path, ENAMETOOLONG);
    }
}

/// mkdir -p of every parent of `path` (not `path` itself).
static void make_parents(const char *path) {
    char buffer[PATH_MAX];
    stockade_strlcpy(buffer, path, sizeof(buffer));
    for (char *cursor = buffer + 1; *cursor != '\0'; cursor++) {
        if (*cursor != '/') continue;
        *cursor = '\0';
        if (mkdir(buffer, 0755) < 0 && errno != EEXIST) stockade_child_fail("create directory", buffer, errno);
        *cursor = '/';
    }
}

static void make_directory(const char *path, unsigned int mode) {
    make_parents(path);
    if (mkdir(path, mode) < 0) {
        if (errno == EEXIST) return; // already there (inside a read-only bind, perhaps)
        stockade_child_fail("create directory", path, errno);
    }
    // mkdir applies the umask; the plan's mode is meant exactly.
    if (chmod(path, mode) < 0) stockade_child_fail("set the mode of", path, errno);
}

static void make_empty_file(const char *path, unsigned int mode) {
    make_parents(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) stockade_child_fail("create file", path, errno);
    close(fd);
}

/// Sets mount attributes on `path` (and below it when `recursive`), only ever adding
/// restrictions. mount_setattr (Linux 5.12) never clears the flags the kernel locked
/// when the mount came from a more privileged namespace, which MS_REMOUNT would try to.
static void restrict_mount(const char *path, uint64_t attributes, int recursive) {
    struct stockade_mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = attributes;
    unsigned int flags = recursive ? STOCKADE_AT_RECURSIVE : 0;
    if (syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attr, sizeof(attr)) < 0) stockade_child_fail("restrict mount", path, errno);
}

static void bind(const struct stockade_mount_op *op, const char *target) {
    uint64_t attributes = STOCKADE_MOUNT_ATTR_NOSUID | STOCKADE_MOUNT_ATTR_NODEV;
    if (op->read_only) attributes |= STOCKADE_MOUNT_ATTR_RDONLY;
    if (op->tree_fd >= 0) {
        // A tree the supervisor prepared (idmapped): attach it here.
        make_directory(target, 0755);
        if (syscall(SYS_move_mount, op->tree_fd, "", AT_FDCWD, target, STOCKADE_MOVE_MOUNT_F_EMPTY_PATH) < 0)
            stockade_child_fail("attach prepared mount at", op->path, errno);
        restrict_mount(target, attributes, 1);
        return;
    }
    // The source was resolved (realpath) when the plan was made, so any symlink on
    // its path now was planted since, by a concurrent sandbox, say, to redirect the
    // bind to a host file: refuse it. openat2 also keeps the walk inside /oldroot.
    char source[PATH_MAX];
    join(source, OLDROOT, op->source);
    struct stockade_open_how how = {
        .flags = O_PATH | O_CLOEXEC,
        .mode = 0,
        .resolve = STOCKADE_RESOLVE_NO_SYMLINKS | STOCKADE_RESOLVE_NO_MAGICLINKS,
    };
    int source_fd = (int)syscall(SYS_openat2, AT_FDCWD, source, &how, sizeof(how));
    if (source_fd < 0) {
        if (errno == ELOOP) stockade_child_fail("bind (a symlink appeared on its path since the plan was made)", op->source, errno);
        stockade_child_fail("find bind source", op->source, errno);
    }
    struct stat info;
    if (fstat(source_fd, &info) < 0) stockade_child_fail("inspect bind source", op->source, errno);
    if (S_ISDIR(info.st_mode)) make_directory(target, 0755);
    else make_empty_file(target, 0444);
    int tree = (int)syscall(SYS_open_tree, source_fd, "", STOCKADE_OPEN_TREE_CLONE | STOCKADE_AT_RECURSIVE | STOCKADE_AT_EMPTY_PATH);
    if (tree < 0) stockade_child_fail("bind mount", op->source, errno);
    if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, STOCKADE_MOVE_MOUNT_F_EMPTY_PATH) < 0)
        stockade_child_fail("bind mount", op->source, errno);
    close(tree);
    close(source_fd);
    restrict_mount(target, attributes, 1);
}

static void device(const struct stockade_mount_op *op, const char *target) {
    char source[PATH_MAX];
    join(source, OLDROOT, op->source);
    make_empty_file(target, 0666);
    if (mount(source, target, NULL, MS_BIND, NULL) < 0) stockade_child_fail("bind device", op->source, errno);
    // Device binds are the only mounts without nodev; they stay noexec and nosuid.
    restrict_mount(target, STOCKADE_MOUNT_ATTR_NOSUID | STOCKADE_MOUNT_ATTR_NOEXEC, 0);
}

static void tmpfs(const struct stockade_mount_op *op, const char *target, const struct stockade_spawn_config *config) {
    make_directory(target, 0755);
    char options[256];
    if (op->owned_by_user) {
        snprintf(options, sizeof(options), "size=%llu,nr_inodes=%llu,mode=%o,uid=%u,gid=%u",
                 (unsigned long long)op->size_bytes, (unsigned long long)op->inodes, op->mode, config->uid, config->gid);
    } else {
        snprintf(options, sizeof(options), "size=%llu,nr_inodes=%llu,mode=%o",
                 (unsigned long long)op->size_bytes, (unsigned long long)op->inodes, op->mode);
    }
    if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options) < 0) stockade_child_fail("mount tmpfs at", op->path, errno);
}

/// Opens `relative` below `base` (a sandbox path) as an O_PATH fd, resolved with
/// openat2 beneath the base and without following any symlink, so that a link planted
/// in the workspace cannot redirect a mount made there to a host file. The plan holds
/// no symlinks on these paths (the scanner resolves hidden symlinks to their targets),
/// so one found now was planted since, by a concurrent sandbox: fail closed rather
/// than leave a hidden file unmasked. Returns -1 only when the entry is gone.
static int open_beneath(const char *base_path, const char *relative) {
    char base[PATH_MAX];
    join(base, NEWROOT, base_path);
    int base_fd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (base_fd < 0) stockade_child_fail("open", base_path, errno);
    struct stockade_open_how how = {
        .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
        .mode = 0,
        .resolve = STOCKADE_RESOLVE_BENEATH | STOCKADE_RESOLVE_NO_SYMLINKS | STOCKADE_RESOLVE_NO_MAGICLINKS,
    };
    int target_fd = (int)syscall(SYS_openat2, base_fd, relative, &how, sizeof(how));
    close(base_fd);
    if (target_fd < 0) {
        if (errno == ENOENT) return -1;
        if (errno == ELOOP || errno == EXDEV)
            stockade_child_fail("hide or protect (the workspace changed while the sandbox started: a symlink appeared at)", relative, errno);
        stockade_child_fail("open", relative, errno);
    }
    struct stat info;
    if (fstat(target_fd, &info) < 0) stockade_child_fail("inspect", relative, errno);
    if (!S_ISDIR(info.st_mode) && !S_ISREG(info.st_mode)) {
        close(target_fd);
        return -1;
    }
    return target_fd;
}

/// Attaches a clone of `source_fd`'s mount tree (or of the path `source`) on
/// `target_fd`, read-only.
static void attach_read_only(int source_fd, const char *source, int target_fd, const char *what) {
    int tree = source_fd >= 0
        ? (int)syscall(SYS_open_tree, source_fd, "", STOCKADE_OPEN_TREE_CLONE | STOCKADE_AT_EMPTY_PATH)
        : (int)syscall(SYS_open_tree, AT_FDCWD, source, STOCKADE_OPEN_TREE_CLONE);
    if (tree < 0) stockade_child_fail("prepare a mount for", what, errno);
    struct stockade_mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = STOCKADE_MOUNT_ATTR_RDONLY | STOCKADE_MOUNT_ATTR_NOSUID | STOCKADE_MOUNT_ATTR_NODEV;
    if (syscall(SYS_mount_setattr, tree, "", STOCKADE_AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        stockade_child_fail("make read-only", what, errno);
    if (syscall(SYS_move_mount, tree, "", target_fd, "", STOCKADE_MOVE_MOUNT_F_EMPTY_PATH | STOCKADE_MOVE_MOUNT_T_EMPTY_PATH) < 0)
        stockade_child_fail("mount over", what, errno);
    close(tree);
}

/// Hides `relative` below `base`: files get an empty mode-0 file over them,
/// directories an empty mode-0 directory; both read-only.
static void mask(const struct stockade_mount_op *op) {
    int target_fd = open_beneath(op->path, op->source);
    if (target_fd < 0) return;
    struct stat info;
    if (fstat(target_fd, &info) < 0) stockade_child_fail("inspect hidden path", op->source, errno);
    attach_read_only(-1, S_ISDIR(info.st_mode) ? "/mask-directory" : "/mask-file", target_fd, op->source);
    close(target_fd);
}

/// Makes `relative` below `base` read-only by binding it over itself.
static void read_only_beneath(const struct stockade_mount_op *op) {
    int target_fd = open_beneath(op->path, op->source);
    if (target_fd < 0) return;
    attach_read_only(target_fd, NULL, target_fd, op->source);
    close(target_fd);
}

/// Binds the directory `relative` below `base` over itself, with its submounts and
/// flags unchanged: a mount point cannot be renamed or removed, so the protected
/// entries inside it cannot be moved aside and replaced.
static void pin_beneath(const struct stockade_mount_op *op) {
    int target_fd = open_beneath(op->path, op->source);
    if (target_fd < 0) return;
    int tree = (int)syscall(SYS_open_tree, target_fd, "", STOCKADE_OPEN_TREE_CLONE | STOCKADE_AT_RECURSIVE | STOCKADE_AT_EMPTY_PATH);
    if (tree < 0) stockade_child_fail("prepare a mount for", op->source, errno);
    if (syscall(SYS_move_mount, tree, "", target_fd, "", STOCKADE_MOVE_MOUNT_F_EMPTY_PATH | STOCKADE_MOVE_MOUNT_T_EMPTY_PATH) < 0)
        stockade_child_fail("pin", op->source, errno);
    close(tree);
    close(target_fd);
}

static void carry_out(const struct stockade_mount_op *op, const struct stockade_spawn_config *config) {
    char target[PATH_MAX];
    join(target, NEWROOT, op->path);
    switch (op->kind) {
    case STOCKADE_MOUNT_DIRECTORY:
        make_directory(target, op->mode);
        break;
    case STOCKADE_MOUNT_FILE: {
        make_parents(target);
        int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) stockade_child_fail("create file", op->path, errno);
        size_t written = 0;
        while (written < op->source_length) {
            ssize_t n = write(fd, op->source + written, op->source_length - written);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) stockade_child_fail("write file", op->path, errno);
            written += (size_t)n;
        }
        if (fchmod(fd, op->mode) < 0) stockade_child_fail("set the mode of", op->path, errno);
        close(fd);
        break;
    }
    case STOCKADE_MOUNT_SYMLINK:
        make_parents(target);
        if (symlink(op->source, target) < 0 && errno != EEXIST) stockade_child_fail("create symlink", op->path, errno);
        break;
    case STOCKADE_MOUNT_BIND:
        bind(op, target);
        break;
    case STOCKADE_MOUNT_DEVICE:
        device(op, target);
        break;
    case STOCKADE_MOUNT_TMPFS:
        tmpfs(op, target, config);
        break;
    case STOCKADE_MOUNT_PROC:
        make_directory(target, 0555);
        if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            stockade_child_fail("mount proc at", op->path, errno);
        break;
    case STOCKADE_MOUNT_DEVPTS:
        make_directory(target, 0755);
        // newinstance: a devpts of our own, so no terminal of the host's is reachable.
        if (mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620") < 0)
            stockade_child_fail("mount devpts at", op->path, errno);
        break;
    case STOCKADE_MOUNT_READONLY: {
        struct stat info;
        if (lstat(target, &info) < 0 && errno == ENOENT) break; // not on this kernel
        if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0) stockade_child_fail("bind in place", op->path, errno);
        restrict_mount(target, STOCKADE_MOUNT_ATTR_RDONLY | STOCKADE_MOUNT_ATTR_NOSUID | STOCKADE_MOUNT_ATTR_NODEV, 1);
        break;
    }
    case STOCKADE_MOUNT_MASK:
        mask(op);
        break;
    case STOCKADE_MOUNT_READONLY_BENEATH:
        read_only_beneath(op);
        break;
    case STOCKADE_MOUNT_PIN_BENEATH:
        pin_beneath(op);
        break;
    default:
        stockade_child_fail("carry out an unknown mount step for", op->path, EINVAL);
    }
}

void stockade_child_build_root(const struct stockade_spawn_config *config) {
    // No mount event crosses between the host and the sandbox in either direction
    // (mount propagation would otherwise let host mounts appear inside, or ours leak).
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) stockade_child_fail("make mounts private", NULL, errno);

    // A scratch tmpfs at /tmp (only in our namespace) becomes the temporary root.
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=64,mode=0755") < 0)
        stockade_child_fail("mount the scratch tmpfs", NULL, errno);
    if (chdir("/tmp") < 0) stockade_child_fail("enter the scratch tmpfs", NULL, errno);
    if (mkdir("newroot", 0755) < 0 || mkdir("oldroot", 0755) < 0) stockade_child_fail("create pivot directories", NULL, errno);
    // Placeholders for hidden paths: empty, mode 0, never written.
    if (mkdir("mask-directory", 0) < 0) stockade_child_fail("create the mask directory", NULL, errno);
    int placeholder = open("mask-file", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (placeholder < 0) stockade_child_fail("create the mask file", NULL, errno);
    close(placeholder);
    if (syscall(SYS_pivot_root, ".", "oldroot") < 0) stockade_child_fail("pivot to the scratch root", NULL, errno);
    if (chdir("/") < 0) stockade_child_fail("enter the scratch root", NULL, errno);
    // The masks are read-only mounts; the scratch root itself is dropped at the end.
    if (mount("/mask-directory", "/mask-directory", NULL, MS_BIND, NULL) < 0 ||
        mount("/mask-file", "/mask-file", NULL, MS_BIND, NULL) < 0)
        stockade_child_fail("prepare the mask placeholders", NULL, errno);
    restrict_mount("/mask-directory", STOCKADE_MOUNT_ATTR_RDONLY | STOCKADE_MOUNT_ATTR_NOSUID | STOCKADE_MOUNT_ATTR_NODEV | STOCKADE_MOUNT_ATTR_NOEXEC, 0);
    restrict_mount("/mask-file", STOCKADE_MOUNT_ATTR_RDONLY | STOCKADE_MOUNT_ATTR_NOSUID | STOCKADE_MOUNT_ATTR_NODEV | STOCKADE_MOUNT_ATTR_NOEXEC, 0);

    // The new root: a size-capped tmpfs, made read-only once built.
    char options[96];
    snprintf(options, sizeof(options), "size=%llu,nr_inodes=4096,mode=0755", (unsigned long long)config->root_size_bytes);
    if (mount("tmpfs", NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, options) < 0) stockade_child_fail("mount the root tmpfs", NULL, errno);

    for (size_t i = 0; i < config->mount_count; i++) carry_out(&config->mounts[i], config);

    // The host root leaves our namespace entirely: nothing can be reached through it.
    if (umount2(OLDROOT, MNT_DETACH) < 0) stockade_child_fail("detach the host root", NULL, errno);
    if (chdir(NEWROOT) < 0) stockade_child_fail("enter the new root", NULL, errno);
    // pivot_root(".", ".") stacks the scratch root on top of the new one; the lazy
    // unmount of "." then removes it, leaving the new root as "/" (no chroot, which
    // a process with CAP_SYS_CHROOT could escape).
    if (syscall(SYS_pivot_root, ".", ".") < 0) stockade_child_fail("pivot into the new root", NULL, errno);
    if (umount2(".", MNT_DETACH) < 0) stockade_child_fail("detach the scratch root", NULL, errno);
    if (chdir("/") < 0) stockade_child_fail("enter the new root", NULL, errno);
    restrict_mount("/", STOCKADE_MOUNT_ATTR_RDONLY | STOCKADE_MOUNT_ATTR_NOSUID | STOCKADE_MOUNT_ATTR_NODEV, 0);
    if (chdir(config->working_directory) < 0) stockade_child_fail("enter the working directory", config->working_directory, errno);
}
