// clone() and the child's fixed order of set-up steps. Every step's position is
// deliberate; the comments say why.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include "internal.h"

static int child_error_fd = -1;

size_t stockade_strlcpy(char *dst, const char *src, size_t size) {
    size_t length = 0;
    while (src[length] != '\0') length++;
    if (size > 0) {
        size_t copy = length < size - 1 ? length : size - 1;
        for (size_t i = 0; i < copy; i++) dst[i] = src[i];
        dst[copy] = '\0';
    }
    return length;
}

size_t stockade_strlcat(char *dst, const char *src, size_t size) {
    size_t used = 0;
    while (used < size && dst[used] != '\0') used++;
    if (used == size) return used;
    return used + stockade_strlcpy(dst + used, src, size - used);
}

void stockade_child_fail(const char *what, const char *path, int error_number) {
    struct stockade_child_error report;
    memset(&report, 0, sizeof(report));
    report.error_number = error_number;
    stockade_strlcpy(report.what, what, sizeof(report.what));
    if (path != NULL) {
        stockade_strlcat(report.what, " ", sizeof(report.what));
        stockade_strlcat(report.what, path, sizeof(report.what));
    }
    if (child_error_fd >= 0) {
        ssize_t ignored = write(child_error_fd, &report, sizeof(report));
        (void)ignored;
    }
    _exit(125);
}

/// Moves `fd` to `target`, clearing close-on-exec (dup2 does) unless it is already there.
static void place_fd(int fd, int target, const char *what) {
    if (fd == target) {
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) stockade_child_fail(what, NULL, errno);
        return;
    }
    if (dup2(fd, target) < 0) stockade_child_fail(what, NULL, errno);
}

static int move_high(int fd) {
    if (fd < 0) return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 64);
    if (moved < 0) stockade_child_fail("duplicate a set-up descriptor", NULL, errno);
    return moved;
}

/// A one-byte message with room for one descriptor (SCM_RIGHTS), both directions.
struct fd_message {
    char byte;
    struct iovec vector;
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
};

static void fd_message_init(struct fd_message *carrier, struct msghdr *message) {
    memset(carrier, 0, sizeof(*carrier));
    carrier->vector.iov_base = &carrier->byte;
    carrier->vector.iov_len = 1;
    memset(message, 0, sizeof(*message));
    message->msg_iov = &carrier->vector;
    message->msg_iovlen = 1;
    message->msg_control = carrier->control.space;
    message->msg_controllen = sizeof(carrier->control.space);
}

static void send_proxy_listener(int port, int channel) {
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) stockade_child_fail("open the egress bridge's socket", NULL, errno);
    struct sockaddr_in address;
    memset(&address, 0, sizeof(address));
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof(address)) < 0)
        stockade_child_fail("bind the egress bridge to 127.0.0.1", NULL, errno);
    if (listen(listener, 256) < 0) stockade_child_fail("listen on the egress bridge", NULL, errno);
    struct fd_message carrier;
    struct msghdr message;
    fd_message_init(&carrier, &message);
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &listener, sizeof(int));
    ssize_t sent;
    do {
        sent = sendmsg(channel, &message, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent != 1) stockade_child_fail("hand the egress bridge to the supervisor", NULL, sent < 0 ? errno : EIO);
    close(listener);
    close(channel);
}

__attribute__((noreturn)) static void child_main(const struct stockade_spawn_config *config) {
    // The supervisor's end of the sync pipe: only the supervisor may hold it, so that
    // its death reads as EOF below.
    close(config->sync_write_fd);

    // Step 0: descriptors. Move every fd we need above 63 (close-on-exec) so that
    // placing stdio and the status channel at 0..3 cannot clobber one another, nor the
    // stockade-init memfd (which is fd 3 when it is the supervisor's first file).
    child_error_fd = move_high(config->error_fd);
    int sync_fd = move_high(config->sync_fd);
    int stdin_fd = move_high(config->stdin_fd);
    int stdout_fd = move_high(config->stdout_fd);
    int stderr_fd = move_high(config->stderr_fd);
    int status_fd = move_high(config->status_fd);
    int init_fd = move_high(config->init_fd);
    int proxy_channel_fd = config->proxy_port > 0 ? move_high(config->proxy_channel_fd) : -1;

    // Signals: the supervisor blocks the ones it forwards; nothing of that may reach
    // the sandbox, so start from an empty mask and default dispositions.
    // Dispositions first, then the mask, so no handler of the supervisor's can run here.
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        signal(s, SIG_DFL);
    }
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);

    // Step 1: wait until the supervisor has written our uid/gid maps and moved us into
    // our cgroups. EOF means it gave up (or died): leave quietly.
    char go = 0;
    ssize_t got;
    do {
        got = read(sync_fd, &go, 1);
    } while (got < 0 && errno == EINTR);
    if (got != 1) _exit(125);
    close(sync_fd);

    // Root mode: become the namespace's root (an unprivileged id on the host), so
    // that the files of the set-up have an owner the namespace can represent.
    // (Raw system calls: see stockade_child_drop_privileges.)
    if (config->privileged && (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0))
        stockade_child_fail("switch to the namespace's root for the set-up", NULL, errno);

    // Step 2: the cgroup namespace, only now that we sit in our own cgroups, so that
    // /proc/self/cgroup shows "/" and nothing of the host's hierarchy.
    if (unshare(CLONE_NEWCGROUP) < 0) stockade_child_fail("create the cgroup namespace", NULL, errno);

    // Step 3: our own host name in our own UTS namespace.
    size_t hostname_length = strlen(config->hostname);
    if (sethostname(config->hostname, hostname_length) < 0) stockade_child_fail("set the host name", NULL, errno);

    // The network namespace's own loopback, up: programs inside may talk to each
    // other (a server one action started, a client the next runs); nothing else is
    // there to reach.
    int netlink = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (netlink < 0) stockade_child_fail("open a socket to bring up the loopback device", NULL, errno);
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(netlink, SIOCGIFFLAGS, &request) < 0) stockade_child_fail("read the loopback device's flags", NULL, errno);
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(netlink, SIOCSIFFLAGS, &request) < 0) stockade_child_fail("bring up the loopback device", NULL, errno);
    close(netlink);

    // The egress bridge: the one listener of the sandbox that leads out, opened here,
    // handed to the supervisor and closed, so nothing inside can accept on it. The port
    // stays bound for the sandbox's life: no program inside can take it over.
    if (proxy_channel_fd >= 0) send_proxy_listener(config->proxy_port, proxy_channel_fd);

    // Step 4: the root file system (mounts.c); ends inside the new root.
    stockade_child_build_root(config);

    // Step 5: stdio and the status channel at 0..3; everything else close-on-exec, so
    // nothing of the supervisor's (or the host's) reaches the sandbox: CVE-2024-21626
    // was a leaked directory fd that let a container reach the host root.
    place_fd(stdin_fd, 0, "set up standard input");
    place_fd(stdout_fd, 1, "set up standard output");
    place_fd(stderr_fd, 2, "set up standard error");
    place_fd(status_fd, 3, "set up the status channel");
    if (syscall(SYS_close_range, 4U, ~0U, STOCKADE_CLOSE_RANGE_CLOEXEC) < 0)
        stockade_child_fail("mark inherited descriptors close-on-exec", NULL, errno);

    // Step 6: a new session, so the sandbox has no controlling terminal of the
    // caller's: TIOCSTI injection (CVE-2017-5226) fails even without the seccomp rule.
    if (setsid() < 0) stockade_child_fail("start a new session", NULL, errno);

    // Step 7: resource limits, then credentials and capabilities, then no_new_privs,
    // Landlock and finally seccomp (security.c). seccomp comes last so that the
    // set-up itself is not constrained by it.
    stockade_child_apply_rlimits(config);
    stockade_child_drop_privileges(config);
    stockade_child_apply_landlock(config);
    stockade_child_apply_seccomp(config);

    // Step 8: become stockade-init (PID 1 of the new PID namespace). The fd is a sealed
    // memfd copy, so /proc/1/exe inside cannot reach a host binary (CVE-2019-5736).
    syscall(SYS_execveat, init_fd, "", config->init_argv, config->init_envp, STOCKADE_AT_EMPTY_PATH);
    stockade_child_fail("start stockade-init", NULL, errno);
}

struct stockade_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
};

pid_t stockade_spawn(const struct stockade_spawn_config *config, int *pidfd) {
    uint64_t namespaces = STOCKADE_CLONE_NEWUSER | STOCKADE_CLONE_NEWNS | STOCKADE_CLONE_NEWPID |
                          STOCKADE_CLONE_NEWNET | STOCKADE_CLONE_NEWIPC | STOCKADE_CLONE_NEWUTS;
    int fd = -1;
    struct stockade_clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = namespaces | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)&fd;
    args.exit_signal = SIGCHLD;
    // Like fork(): the child runs on a copy of this stack and returns here with 0.
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0) return -errno;
    if (pid == 0) child_main(config);
    *pidfd = fd;
    return (pid_t)pid;
}

pid_t stockade_spawn_helper(const char *path, char *const *argv, char *const *envp, const int *stdio, int gate_fd,
                            int *pidfd) {
    int fd = -1;
    struct stockade_clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)&fd;
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0) return -errno;
    if (pid == 0) {
        // Only async-signal-safe calls from here to exec. No PR_SET_PDEATHSIG: it
        // follows the calling thread, not the process; the caller's lifeline is a
        // descriptor the helper's work depends on (the guest's session socket).
        // Moved high first, so that placing one cannot overwrite another; then
        // everything else is closed before waiting, so that this child holds no copy
        // of another launch's pipes while it waits.
        int high[4];
        const int sources[4] = {stdio[0], stdio[1], stdio[2], gate_fd};
        for (int i = 0; i < 4; i++) {
            high[i] = fcntl(sources[i], F_DUPFD_CLOEXEC, 10);
            if (high[i] < 0) _exit(127);
        }
        for (int i = 0; i < 4; i++)
            if (dup2(high[i], i) < 0) _exit(127);
        if (syscall(SYS_close_range, 4U, ~0U, 0) < 0) _exit(127);
        char byte;
        ssize_t got;
        do {
            got = read(3, &byte, 1);
        } while (got < 0 && errno == EINTR);
        if (got != 1) _exit(127);
        close(3);
        execve(path, argv, envp);
        _exit(127);
    }
    *pidfd = fd;
    return (pid_t)pid;
}

int stockade_pidfd_send_signal(int pidfd, int signal) {
    if (syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0) < 0) return -errno;
    return 0;
}

int stockade_receive_fd(int socket) {
    struct fd_message carrier;
    struct msghdr message;
    fd_message_init(&carrier, &message);
    ssize_t got;
    do {
        got = recvmsg(socket, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got < 0) return -errno;
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    int fd = -1;
    if (header != NULL && header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS &&
        header->cmsg_len >= CMSG_LEN(sizeof(int)))
        memcpy(&fd, CMSG_DATA(header), sizeof(int));
    if (got != 1 || fd < 0 || (message.msg_flags & MSG_CTRUNC) || header->cmsg_len != CMSG_LEN(sizeof(int))) {
        if (fd >= 0) close(fd);
        return -EPROTO;
    }
    return fd;
}

int stockade_cloexec_pipe(int *fds) {
    if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
    return 0;
}

int stockade_signalfd(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int stockade_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t got = read(fd, &info, sizeof(info));
    if (got != (ssize_t)sizeof(info)) return got < 0 ? -errno : -EIO;
    return (int)info.ssi_signo;
}
