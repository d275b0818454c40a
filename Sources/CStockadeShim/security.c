// Privileges, Landlock, rlimits and seccomp for the child, in this order:
// rlimits; bounding set, groups, gid, uid, capabilities; no_new_privs; Landlock;
// seccomp last (no_new_privs must precede both; seccomp must follow everything that
// needs a system call it denies).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include "internal.h"

void stockade_child_apply_rlimits(const struct stockade_spawn_config *config) {
    for (size_t i = 0; i < config->rlimit_count; i++) {
        struct rlimit limit = {.rlim_cur = config->rlimits[i].soft, .rlim_max = config->rlimits[i].hard};
        if (setrlimit(config->rlimits[i].resource, &limit) < 0) stockade_child_fail("set a resource limit", NULL, errno);
    }
}

void stockade_child_drop_privileges(const struct stockade_spawn_config *config) {
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes below.
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) stockade_child_fail("drop a capability from the bounding set", NULL, errno);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        stockade_child_fail("clear ambient capabilities", NULL, errno);
    // Supplementary groups inherited from the caller (root's group 0, say) would
    // still grant host group access; clear them where the namespace permits it.
    // Raw system calls, not glibc's wrappers: in a process that had other threads
    // glibc broadcasts set*id to them (__nptl_setxid) and takes locks that a thread of
    // the supervisor may have held at clone time; the child would hang.
    if (config->privileged && syscall(SYS_setgroups, 0, NULL) < 0) stockade_child_fail("clear supplementary groups", NULL, errno);
    // gid before uid: after setresuid we could no longer change the gid.
    if (syscall(SYS_setresgid, config->gid, config->gid, config->gid) < 0) stockade_child_fail("switch to the sandbox group", NULL, errno);
    if (syscall(SYS_setresuid, config->uid, config->uid, config->uid) < 0) stockade_child_fail("switch to the sandbox user", NULL, errno);
    // Clear every capability explicitly: the uid change does not do it when we came
    // from an unmapped (host root) uid, and the program must not be root-with-caps
    // inside its namespace.
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &header, data) < 0) stockade_child_fail("drop capabilities", NULL, errno);
    // No exec can ever grant privileges again (setuid binaries, file capabilities).
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) stockade_child_fail("set no_new_privs", NULL, errno);
}

struct stockade_landlock_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct stockade_landlock_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

// Rights that apply to files (not only directories); a rule on a file may hold only these.
#define STOCKADE_LANDLOCK_FILE_RIGHTS ((1ULL << 0) | (1ULL << 1) | (1ULL << 2) | (1ULL << 14) | (1ULL << 15))

int stockade_landlock_abi(void) {
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, 1U /* LANDLOCK_CREATE_RULESET_VERSION */);
    if (abi < 0) return -errno;
    return (int)abi;
}

void stockade_child_apply_landlock(const struct stockade_spawn_config *config) {
    if (config->landlock_abi <= 0) return;
    struct stockade_landlock_ruleset_attr attr = {
        .handled_access_fs = config->landlock_handled_fs,
        .handled_access_net = 0,
        .scoped = config->landlock_scoped,
    };
    // The attribute's size tells the kernel which fields we know; ABI 6 added scoped.
    size_t size = config->landlock_abi >= 6 ? sizeof(attr) : sizeof(uint64_t);
    int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0U);
    if (ruleset < 0) stockade_child_fail("create the Landlock ruleset", NULL, errno);
    for (size_t i = 0; i < config->landlock_rule_count; i++) {
        const struct stockade_landlock_rule *rule = &config->landlock_rules[i];
        int fd = open(rule->path, O_PATH | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) continue;
            stockade_child_fail("open a Landlock path", rule->path, errno);
        }
        struct stat info;
        if (fstat(fd, &info) < 0) stockade_child_fail("inspect a Landlock path", rule->path, errno);
        struct stockade_landlock_path_beneath_attr beneath = {.allowed_access = rule->access, .parent_fd = fd};
        if (!S_ISDIR(info.st_mode)) beneath.allowed_access &= STOCKADE_LANDLOCK_FILE_RIGHTS;
        beneath.allowed_access &= config->landlock_handled_fs;
        if (syscall(SYS_landlock_add_rule, ruleset, 1 /* LANDLOCK_RULE_PATH_BENEATH */, &beneath, 0U) < 0)
            stockade_child_fail("add a Landlock rule for", rule->path, errno);
        close(fd);
    }
    if (syscall(SYS_landlock_restrict_self, ruleset, 0U) < 0) stockade_child_fail("enforce the Landlock ruleset", NULL, errno);
    close(ruleset);
}

void stockade_child_apply_seccomp(const struct stockade_spawn_config *config) {
    if (config->seccomp_program == NULL || config->seccomp_length == 0) return;
    struct sock_fprog program = {
        .len = (unsigned short)(config->seccomp_length / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)config->seccomp_program,
    };
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) < 0) stockade_child_fail("install the seccomp filter", NULL, errno);
}
