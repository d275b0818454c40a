// stockade-init in session mode: the guest agent of a sandbox that lives across many
// actions. It reads EXEC and SIGNAL frames from the supervisor on fd 3 (a socket, also
// its lifeline), starts each command in a process group of its own, streams its output
// back in frames, and reports how it ended and which per-action limit ended it. Other
// processes (servers an action started in the background) keep running between
// actions; their output is read and dropped once their action has been reported, so
// that they never die of a full or broken pipe. When the supervisor closes the socket
// or dies, everything in the sandbox is killed.
#define _GNU_SOURCE
#include "guest_protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONTROL_FD 3
/// Actions that may run at once.
#define MAX_ACTIONS 64
/// Output pipes of finished actions still held open by background processes.
#define MAX_DETACHED 256
/// How long output may still come after an action's process exited, before the action
/// is reported and its pipes (held by something it left running) are only drained.
#define EXIT_GRACE_MS 50
#define CHUNK 65536

struct action {
    int used;
    uint32_t id;
    pid_t pid;
    int fds[2]; // stdout, stderr read ends; -1 once closed
    uint64_t deadline_ms; // 0: none
    uint64_t output_max;
    uint64_t output_count;
    int limit;
    int exited;
    int status;
    struct rusage usage;
    uint64_t exited_at_ms;
};

static struct action actions[MAX_ACTIONS];
static int detached[MAX_DETACHED];
static int detached_count;
static uint8_t *inbox;
/// The next action's standard input instead of /dev/null (once; -1 when none).
static int first_input = -1;
// The kernel's classic BPF program types (linux/filter.h, which musl does not ship).
struct sock_filter {
    uint16_t code;
    uint8_t jt;
    uint8_t jf;
    uint32_t k;
};
struct sock_fprog {
    unsigned short len;
    struct sock_filter *filter;
};
#ifndef SECCOMP_MODE_FILTER
#define SECCOMP_MODE_FILTER 2
#endif

/// The system-call filter each command gets before exec, when the runtime could not
/// install it around stockade-init (gVisor); len 0 when none.
static struct sock_fprog command_filter;

int guest_load_filter(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    static struct sock_filter program[4096];
    size_t total = 0;
    while (total < sizeof(program)) {
        ssize_t got = read(fd, (uint8_t *)program + total, sizeof(program) - total);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int saved = errno;
            close(fd);
            return -saved;
        }
        if (got == 0) break;
        total += (size_t)got;
    }
    close(fd);
    if (total == 0 || total % sizeof(struct sock_filter) != 0 || total == sizeof(program)) return -EINVAL;
    command_filter.len = (unsigned short)(total / sizeof(struct sock_filter));
    command_filter.filter = program;
    return 0;
}
static size_t inbox_length;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void die_with_everything(void) {
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {}
    _exit(0);
}

static void write_all(const uint8_t *bytes, size_t length) {
    while (length > 0) {
        // MSG_NOSIGNAL: a supervisor that is gone is an error here, not a SIGPIPE.
        ssize_t written = send(CONTROL_FD, bytes, length, MSG_NOSIGNAL);
        if (written < 0 && errno == EINTR) continue;
        // The supervisor is gone: nothing may outlive it.
        if (written <= 0) die_with_everything();
        bytes += written;
        length -= (size_t)written;
    }
}

static void send_frame(uint8_t type, const uint8_t *head, size_t head_length, const uint8_t *body, size_t body_length) {
    uint8_t header[5];
    guest_put_u32(header, (uint32_t)(1 + head_length + body_length));
    header[4] = type;
    write_all(header, sizeof(header));
    if (head_length) write_all(head, head_length);
    if (body_length) write_all(body, body_length);
}

static void send_u32_i32(uint8_t type, uint32_t id, int32_t value) {
    uint8_t payload[8];
    guest_put_u32(payload, id);
    guest_put_u32(payload + 4, (uint32_t)value);
    send_frame(type, payload, sizeof(payload), NULL, 0);
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/// Reports a finished action and frees its slot; pipes still open (held by background
/// processes) are drained from now on without being reported.
static void finish(struct action *a) {
    for (int i = 0; i < 2; i++) {
        if (a->fds[i] >= 0) {
            if (detached_count < MAX_DETACHED) {
                detached[detached_count++] = a->fds[i];
            } else {
                close(a->fds[i]);
            }
            a->fds[i] = -1;
        }
    }
    uint8_t payload[4 + 1 + 1 + 2 + 4 + 8 + 8];
    memset(payload, 0, sizeof(payload));
    guest_put_u32(payload, a->id);
    int signaled = WIFSIGNALED(a->status);
    payload[4] = signaled ? GUEST_HOW_SIGNALED : GUEST_HOW_EXITED;
    int limit = a->limit;
    if (limit == GUEST_LIMIT_NONE && signaled && WTERMSIG(a->status) == SIGXCPU) limit = GUEST_LIMIT_CPU;
    payload[5] = (uint8_t)limit;
    guest_put_u32(payload + 8, (uint32_t)(signaled ? WTERMSIG(a->status) : WEXITSTATUS(a->status)));
    uint64_t cpu_us = (uint64_t)a->usage.ru_utime.tv_sec * 1000000 + (uint64_t)a->usage.ru_utime.tv_usec
        + (uint64_t)a->usage.ru_stime.tv_sec * 1000000 + (uint64_t)a->usage.ru_stime.tv_usec;
    guest_put_u64(payload + 12, cpu_us);
    guest_put_u64(payload + 20, (uint64_t)a->usage.ru_maxrss);
    send_frame(GUEST_EXITED, payload, sizeof(payload), NULL, 0);
    a->used = 0;
}

static struct action *find(uint32_t id) {
    for (int i = 0; i < MAX_ACTIONS; i++)
        if (actions[i].used && actions[i].id == id) return &actions[i];
    return NULL;
}

static void start(const struct guest_exec *exec, const sigset_t *handled) {
    if (find(exec->id) != NULL) {
        send_u32_i32(GUEST_FAILED, exec->id, EEXIST);
        return;
    }
    struct action *slot = NULL;
    for (int i = 0; i < MAX_ACTIONS && slot == NULL; i++)
        if (!actions[i].used) slot = &actions[i];
    if (slot == NULL) {
        send_u32_i32(GUEST_FAILED, exec->id, EAGAIN);
        return;
    }
    int out[2], err[2], report[2];
    if (pipe2(out, O_CLOEXEC) < 0) {
        send_u32_i32(GUEST_FAILED, exec->id, errno);
        return;
    }
    if (pipe2(err, O_CLOEXEC) < 0) {
        int saved = errno;
        close(out[0]);
        close(out[1]);
        send_u32_i32(GUEST_FAILED, exec->id, saved);
        return;
    }
    if (pipe2(report, O_CLOEXEC) < 0) {
        int saved = errno;
        close(out[0]);
        close(out[1]);
        close(err[0]);
        close(err[1]);
        send_u32_i32(GUEST_FAILED, exec->id, saved);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction default_action;
        memset(&default_action, 0, sizeof(default_action));
        default_action.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; s++)
            if (sigismember(handled, s) == 1) sigaction(s, &default_action, NULL);
        sigset_t empty;
        sigemptyset(&empty);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        int failure = 0;
        int null = first_input >= 0 ? first_input : open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) failure = errno;
        // Its own process group: a wall-time or output limit ends the whole action.
        if (!failure && setpgid(0, 0) < 0) failure = errno;
        if (!failure && chdir(exec->cwd) < 0) failure = errno;
        // The filter last but one (exec itself must pass it).
        if (!failure && command_filter.len > 0) {
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &command_filter) < 0)
                failure = errno;
        }
        if (!failure && exec->cpu_ms > 0) {
            rlim_t seconds = ((rlim_t)exec->cpu_ms + 999) / 1000;
            struct rlimit limit = {.rlim_cur = seconds, .rlim_max = seconds + 1};
            if (setrlimit(RLIMIT_CPU, &limit) < 0) failure = errno;
        }
        if (!failure) {
            // PATH is looked up in the action's own environment.
            const char *path = NULL;
            for (char **entry = exec->envp; *entry != NULL; entry++)
                if (strncmp(*entry, "PATH=", 5) == 0) path = *entry + 5;
            if (strchr(exec->argv[0], '/') != NULL || path == NULL) {
                execve(exec->argv[0], exec->argv, exec->envp);
                failure = errno;
            } else {
                failure = ENOENT;
                char candidate[4096];
                const char *directory = path;
                while (1) {
                    const char *end = strchr(directory, ':');
                    size_t length = end ? (size_t)(end - directory) : strlen(directory);
                    if (length + 1 + strlen(exec->argv[0]) + 1 <= sizeof(candidate)) {
                        memcpy(candidate, length ? directory : ".", length ? length : 1);
                        size_t used = length ? length : 1;
                        candidate[used] = '/';
                        strcpy(candidate + used + 1, exec->argv[0]);
                        execve(candidate, exec->argv, exec->envp);
                        // Keep the most telling error: "not executable" over "not found".
                        if (errno != ENOENT && errno != ENOTDIR) failure = errno;
                    }
                    if (end == NULL) break;
                    directory = end + 1;
                }
            }
        }
        ssize_t ignored = write(report[1], &failure, sizeof(failure));
        (void)ignored;
        _exit(127);
    }
    int fork_error = errno;
    if (first_input >= 0) {
        close(first_input);
        first_input = -1;
    }
    close(out[1]);
    close(err[1]);
    close(report[1]);
    if (pid < 0) {
        close(out[0]);
        close(err[0]);
        close(report[0]);
        send_u32_i32(GUEST_FAILED, exec->id, fork_error);
        return;
    }
    // Also from here, so that a signal for the group cannot race the child's own call.
    setpgid(pid, pid);
    int failure = 0;
    ssize_t got;
    do {
        got = read(report[0], &failure, sizeof(failure));
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof(failure)) {
        close(out[0]);
        close(err[0]);
        // Reaped by the SIGCHLD loop, as an unknown pid.
        send_u32_i32(GUEST_FAILED, exec->id, failure);
        return;
    }
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    memset(slot, 0, sizeof(*slot));
    slot->used = 1;
    slot->id = exec->id;
    slot->pid = pid;
    slot->fds[0] = out[0];
    slot->fds[1] = err[0];
    slot->deadline_ms = exec->wall_ms ? now_ms() + exec->wall_ms : 0;
    slot->output_max = exec->output_max;
    send_u32_i32(GUEST_STARTED, exec->id, pid);
}

static void end_action(struct action *a, int limit) {
    if (a->limit == GUEST_LIMIT_NONE) a->limit = limit;
    kill(-a->pid, SIGKILL);
    // Also the process itself: it may have moved to another process group.
    if (!a->exited) kill(a->pid, SIGKILL);
}

/// Reads everything one output pipe holds now (it is non-blocking) and sends it;
/// closes it at EOF. Draining it whole means that what an action wrote before it exited
/// is all sent before the grace period can end it.
static void relay(struct action *a, int which) {
    static uint8_t buffer[CHUNK];
    while (a->fds[which] >= 0) {
        ssize_t count = read(a->fds[which], buffer, sizeof(buffer));
        if (count < 0 && errno == EINTR) continue;
        if (count < 0 && errno == EAGAIN) return;
        if (count <= 0) {
            close_fd(&a->fds[which]);
            return;
        }
        size_t send = (size_t)count;
        if (a->output_max > 0) {
            uint64_t room = a->output_count >= a->output_max ? 0 : a->output_max - a->output_count;
            if (send > room) {
                send = (size_t)room;
                end_action(a, GUEST_LIMIT_OUTPUT);
            }
        }
        a->output_count += (uint64_t)count;
        uint8_t id[4];
        guest_put_u32(id, a->id);
        if (send > 0) send_frame(which == 0 ? GUEST_STDOUT : GUEST_STDERR, id, sizeof(id), buffer, send);
        // Past the limit the rest is only counted, a chunk per round: the group is
        // being killed.
        if (a->limit == GUEST_LIMIT_OUTPUT) return;
    }
}

static void reap(void) {
    int status;
    struct rusage usage;
    pid_t pid;
    while ((pid = wait4(-1, &status, WNOHANG, &usage)) > 0) {
        for (int i = 0; i < MAX_ACTIONS; i++) {
            struct action *a = &actions[i];
            if (a->used && !a->exited && a->pid == pid) {
                a->exited = 1;
                a->status = status;
                a->usage = usage;
                a->exited_at_ms = now_ms();
            }
        }
    }
}

/// Handles every whole frame in the inbox. A frame the protocol does not allow ends
/// the session: the supervisor is the only writer, so one means a bug, not input.
static void handle_frames(const sigset_t *handled) {
    size_t consumed = 0;
    while (1) {
        uint8_t type;
        const uint8_t *payload;
        size_t payload_length;
        long taken = guest_next_frame(inbox + consumed, inbox_length - consumed, &type, &payload, &payload_length);
        if (taken == 0) break;
        if (taken < 0) die_with_everything();
        consumed += (size_t)taken;
        if (type == GUEST_EXEC) {
            struct guest_exec exec;
            if (guest_parse_exec(payload, payload_length, &exec) != 0) die_with_everything();
            start(&exec, handled);
            guest_exec_free(&exec);
        } else if (type == GUEST_SIGNAL) {
            struct guest_signal request;
            if (guest_parse_signal(payload, payload_length, &request) != 0) die_with_everything();
            struct action *a = find(request.id);
            if (a != NULL && !a->exited) kill(-a->pid, (int)request.signal);
        } else {
            die_with_everything();
        }
    }
    memmove(inbox, inbox + consumed, inbox_length - consumed);
    inbox_length -= consumed;
}

int guest_session_main(int signals, const sigset_t *handled, int input) {
    first_input = input;
    fcntl(signals, F_SETFL, fcntl(signals, F_GETFL) | O_NONBLOCK);
    inbox = malloc(GUEST_MAX_FRAME + 4);
    if (inbox == NULL) return 125;
    uint8_t version[4];
    guest_put_u32(version, GUEST_PROTOCOL_VERSION);
    send_frame(GUEST_READY, version, sizeof(version), NULL, 0);

    struct pollfd fds[2 + MAX_ACTIONS * 2 + MAX_DETACHED];
    struct action *owners[2 + MAX_ACTIONS * 2 + MAX_DETACHED];
    int which[2 + MAX_ACTIONS * 2 + MAX_DETACHED];
    while (1) {
        uint64_t now = now_ms();
        int timeout = -1;
        for (int i = 0; i < MAX_ACTIONS; i++) {
            struct action *a = &actions[i];
            if (!a->used) continue;
            if (a->exited && (a->fds[0] < 0 && a->fds[1] < 0)) {
                finish(a);
                continue;
            }
            if (a->exited && now >= a->exited_at_ms + EXIT_GRACE_MS) {
                // Output left only by what the action left running.
                finish(a);
                continue;
            }
            if (!a->exited && a->deadline_ms && now >= a->deadline_ms) end_action(a, GUEST_LIMIT_WALL);
            // Wake for the grace period's end, or for the wall-time deadline (not
            // again once the action has been killed for a limit).
            uint64_t due = a->exited ? a->exited_at_ms + EXIT_GRACE_MS : (a->limit == GUEST_LIMIT_NONE ? a->deadline_ms : 0);
            if (due) {
                uint64_t left = due > now ? due - now : 0;
                int wait = left > 60000 ? 60000 : (int)left;
                if (timeout < 0 || wait < timeout) timeout = wait;
            }
        }
        int count = 0;
        fds[count] = (struct pollfd){.fd = signals, .events = POLLIN};
        owners[count++] = NULL;
        fds[count] = (struct pollfd){.fd = CONTROL_FD, .events = POLLIN};
        owners[count++] = NULL;
        for (int i = 0; i < MAX_ACTIONS; i++) {
            for (int w = 0; w < 2; w++) {
                if (actions[i].used && actions[i].fds[w] >= 0) {
                    fds[count] = (struct pollfd){.fd = actions[i].fds[w], .events = POLLIN};
                    owners[count] = &actions[i];
                    which[count++] = w;
                }
            }
        }
        int first_detached = count;
        for (int i = 0; i < detached_count; i++) {
            fds[count] = (struct pollfd){.fd = detached[i], .events = POLLIN};
            owners[count++] = NULL;
        }
        int ready = poll(fds, (nfds_t)count, timeout);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die_with_everything();
        }
        if (fds[1].revents & POLLIN) {
            ssize_t got = read(CONTROL_FD, inbox + inbox_length, GUEST_MAX_FRAME + 4 - inbox_length);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) die_with_everything();
            inbox_length += (size_t)got;
            handle_frames(handled);
        } else if (fds[1].revents & (POLLERR | POLLHUP | POLLNVAL)) {
            die_with_everything();
        }
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo info;
            while (read(signals, &info, sizeof(info)) == (ssize_t)sizeof(info)) {
                if ((int)info.ssi_signo == SIGCHLD) reap();
                // Other signals from the supervisor end the session's actions; the
                // supervisor uses SIGNAL frames for single ones.
                else kill(-1, (int)info.ssi_signo);
            }
        }
        for (int i = 2; i < first_detached; i++) {
            if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                struct action *a = owners[i];
                if (a->used && a->fds[which[i]] == fds[i].fd) relay(a, which[i]);
            }
        }
        // Drain and drop what background processes write; forget a pipe at EOF.
        static uint8_t discard[CHUNK];
        int kept = 0;
        for (int i = 0; i < detached_count; i++) {
            short revents = fds[first_detached + i].revents;
            if (revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t got = read(detached[i], discard, sizeof(discard));
                if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
                    close(detached[i]);
                    continue;
                }
            }
            detached[kept++] = detached[i];
        }
        detached_count = kept;
    }
}
