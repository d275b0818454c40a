// Helpers the supervisor calls (in the parent, not after fork) for idmapped workspaces.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "internal.h"

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t length = (ssize_t)strlen(text);
    ssize_t written = write(fd, text, (size_t)length);
    int saved = errno;
    close(fd);
    if (written != length) return written < 0 ? -saved : -EIO;
    return 0;
}

int stockade_idmap_userns(unsigned int inside_uid, unsigned int outside_uid, unsigned int inside_gid, unsigned int outside_gid) {
    int gate[2];
    if (pipe2(gate, O_CLOEXEC) < 0) return -errno;
    // The child only holds the namespace open until we have a reference to it.
    long pid = syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), NULL, NULL, NULL, NULL);
    if (pid < 0) {
        int saved = errno;
        close(gate[0]);
        close(gate[1]);
        return -saved;
    }
    if (pid == 0) {
        char byte;
        close(gate[1]);
        while (read(gate[0], &byte, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(gate[0]);
    char path[64], map[64];
    int result = 0;
    snprintf(path, sizeof(path), "/proc/%ld/uid_map", pid);
    snprintf(map, sizeof(map), "%u %u 1\n", inside_uid, outside_uid);
    result = write_file(path, map);
    if (result == 0) {
        snprintf(path, sizeof(path), "/proc/%ld/gid_map", pid);
        snprintf(map, sizeof(map), "%u %u 1\n", inside_gid, outside_gid);
        result = write_file(path, map);
    }
    if (result == 0) {
        snprintf(path, sizeof(path), "/proc/%ld/ns/user", pid);
        result = open(path, O_RDONLY | O_CLOEXEC);
        if (result < 0) result = -errno;
    }
    close(gate[1]);
    while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR) {}
    return result;
}

int stockade_open_beneath(int dirfd, const char *path, int flags, unsigned int mode, int follow_symlinks) {
    unsigned long long resolve = STOCKADE_RESOLVE_BENEATH | STOCKADE_RESOLVE_NO_MAGICLINKS;
    if (!follow_symlinks) resolve |= STOCKADE_RESOLVE_NO_SYMLINKS;
    struct stockade_open_how how = {
        .flags = (unsigned long long)(flags | O_CLOEXEC),
        .mode = (flags & O_CREAT) ? mode : 0,
        .resolve = resolve,
    };
    int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    return fd < 0 ? -errno : fd;
}

int stockade_thread_become(unsigned int uid, unsigned int gid) {
    if (syscall(SYS_setgroups, 0, NULL) < 0) return -errno;
    if (syscall(SYS_setresgid, gid, gid, gid) < 0) return -errno;
    if (syscall(SYS_setresuid, uid, uid, uid) < 0) return -errno;
    return 0;
}

/// open_tree(OPEN_TREE_CLONE|AT_RECURSIVE) of `path`, opened without following any
/// symlink, with `attr_set` applied (and the idmapping of `userns_fd` when it is >= 0).
/// The path was resolved when the plan was made: a symlink on it now is an attack (a
/// concurrent sandbox redirecting a grant), so none is followed.
static int detached_tree(const char *path, uint64_t attr_set, int userns_fd) {
    struct stockade_open_how how = {
        .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
        .mode = 0,
        .resolve = STOCKADE_RESOLVE_NO_SYMLINKS | STOCKADE_RESOLVE_NO_MAGICLINKS,
    };
    int directory = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
    if (directory < 0) return -errno;
    int tree = (int)syscall(SYS_open_tree, directory, "", STOCKADE_OPEN_TREE_CLONE | STOCKADE_AT_RECURSIVE | STOCKADE_AT_EMPTY_PATH | O_CLOEXEC);
    int saved = errno;
    close(directory);
    if (tree < 0) return -saved;
    struct stockade_mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = attr_set;
    if (userns_fd >= 0) {
        attr.attr_set |= STOCKADE_MOUNT_ATTR_IDMAP;
        attr.userns_fd = (uint64_t)userns_fd;
    }
    if (syscall(SYS_mount_setattr, tree, "", STOCKADE_AT_EMPTY_PATH | STOCKADE_AT_RECURSIVE, &attr, sizeof(attr)) < 0) {
        saved = errno;
        close(tree);
        return -saved;
    }
    return tree;
}

int stockade_idmapped_tree(const char *path, int userns_fd, int read_only) {
    uint64_t attributes = STOCKADE_MOUNT_ATTR_NOSUID | STOCKADE_MOUNT_ATTR_NODEV;
    if (read_only) attributes |= STOCKADE_MOUNT_ATTR_RDONLY;
    return detached_tree(path, attributes, userns_fd);
}

int stockade_detached_tree(const char *path) {
    return detached_tree(path, STOCKADE_MOUNT_ATTR_RDONLY | STOCKADE_MOUNT_ATTR_NOSUID | STOCKADE_MOUNT_ATTR_NODEV, -1);
}

int stockade_sealed_executable(const char *path) {
    int source = open(path, O_RDONLY | O_CLOEXEC);
    if (source < 0) return -errno;
    struct stat info;
    if (fstat(source, &info) < 0) {
        int saved = errno;
        close(source);
        return -saved;
    }
    int memfd = memfd_create("stockade-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (memfd < 0) {
        int saved = errno;
        close(source);
        return -saved;
    }
    off_t offset = 0;
    while (offset < info.st_size) {
        ssize_t copied = sendfile(memfd, source, &offset, (size_t)(info.st_size - offset));
        if (copied < 0 && errno == EINTR) continue;
        if (copied <= 0) {
            int saved = copied < 0 ? errno : EIO;
            close(source);
            close(memfd);
            return -saved;
        }
    }
    close(source);
    if (fchmod(memfd, 0555) < 0 ||
        fcntl(memfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
        int saved = errno;
        close(memfd);
        return -saved;
    }
    return memfd;
}
