// stockade-init: PID 1 inside every sandbox.
//
// It starts the command in a session of its own, reaps every zombie, forwards the
// signals the supervisor sends, and when the command ends kills everything left in the
// sandbox (double forks, setsid daemons) before it reports and exits; its exit ends the
// PID namespace, so the kernel kills anything that still remains.
//
// fd 3 is the status channel to the supervisor and its lifeline: one line is written
// at the end ("exited N", "signaled N" or "exec-failed ERRNO"), and POLLERR on it
// (no reader left) means the supervisor died, upon which the sandbox is torn down.
//
// Usage (by the supervisor only): stockade-init -- COMMAND [ARG...]
//                                 stockade-init --session   (see session.c)
//                                 stockade-init --session-stdio
// The last is for runtimes that pass a sandbox only its standard streams (runsc): the
// session socket arrives as fd 1 and is moved to fd 3; what arrives as fd 0 becomes the
// first action's standard input (a one-shot run's), and 0 and 1 become /dev/null.
// Plain C, linked statically: the sandbox root may hold no C library.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define STATUS_FD 3

int guest_session_main(int signals, const sigset_t *handled, int first_input);
int guest_load_filter(const char *path);

/// Where the gVisor tier's bundle puts the plan's system-call filter.
#define COMMAND_FILTER_PATH "/.stockade/seccomp"

static const int forwarded_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};

// A handler must exist: the kernel drops signals with the default disposition that
// reach a namespace's init from outside, even while they are blocked.
static void ignore_signal(int signal_number) { (void)signal_number; }

static void report(const char *line) {
    size_t length = strlen(line);
    while (length > 0) {
        ssize_t written = write(STATUS_FD, line, length);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) return;
        line += written;
        length -= (size_t)written;
    }
}

/// Kills every other process in the namespace and reaps them all.
static void kill_everything(void) {
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {}
}

int main(int argc, char **argv) {
    int session_stdio = argc == 2 && strcmp(argv[1], "--session-stdio") == 0;
    int session = session_stdio || (argc == 2 && strcmp(argv[1], "--session") == 0);
    if (!session && (argc < 3 || strcmp(argv[1], "--") != 0)) {
        fprintf(stderr, "stockade-init: usage: stockade-init -- COMMAND [ARG...] | --session | --session-stdio (started by stockade only)\n");
        return 125;
    }
    int first_input = -1;
    if (session_stdio) {
        // In this order: /dev/null must not land on STATUS_FD before the socket does.
        first_input = fcntl(0, F_DUPFD_CLOEXEC, 10);
        int channel = first_input < 0 ? -1 : dup2(1, STATUS_FD);
        int null = channel < 0 ? -1 : open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0) {
            fprintf(stderr, "stockade-init: failed to set up the session channel on standard output: %s\n", strerror(errno));
            return 125;
        }
        close(null);
        // Runtimes that start us by path cannot install the filter around us: each
        // command gets it instead. Without it, nothing runs.
        int loaded = guest_load_filter(COMMAND_FILTER_PATH);
        if (loaded < 0) {
            fprintf(stderr, "stockade-init: failed to load the system-call filter %s: %s\n", COMMAND_FILTER_PATH, strerror(-loaded));
            return 125;
        }
    }
    // Not dumpable: processes of the sandbox cannot read our memory or environment
    // through /proc/1 or attach to us.
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC);

    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGCHLD);
    for (size_t i = 0; i < sizeof(forwarded_signals) / sizeof(forwarded_signals[0]); i++)
        sigaddset(&handled, forwarded_signals[i]);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = ignore_signal;
    for (int s = 1; s < NSIG; s++)
        if (sigismember(&handled, s) == 1) sigaction(s, &action, NULL);
    sigprocmask(SIG_BLOCK, &handled, NULL);
    int signals = signalfd(-1, &handled, SFD_CLOEXEC);
    if (signals < 0) {
        report("exec-failed 5\n");
        return 125;
    }
    if (session) return guest_session_main(signals, &handled, first_input);

    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) < 0) {
        report("exec-failed 24\n");
        return 125;
    }
    pid_t command = fork();
    if (command < 0) {
        char line[64];
        snprintf(line, sizeof(line), "exec-failed %d\n", errno);
        report(line);
        return 125;
    }
    if (command == 0) {
        struct sigaction default_action;
        memset(&default_action, 0, sizeof(default_action));
        default_action.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; s++)
            if (sigismember(&handled, s) == 1) sigaction(s, &default_action, NULL);
        sigset_t empty;
        sigemptyset(&empty);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        close(exec_pipe[0]);
        setsid();
        execvp(argv[2], argv + 2);
        int error_number = errno;
        ssize_t ignored = write(exec_pipe[1], &error_number, sizeof(error_number));
        (void)ignored;
        _exit(127);
    }
    close(exec_pipe[1]);
    int exec_error = 0;
    ssize_t got;
    do {
        got = read(exec_pipe[0], &exec_error, sizeof(exec_error));
    } while (got < 0 && errno == EINTR);
    close(exec_pipe[0]);
    if (got == (ssize_t)sizeof(exec_error)) {
        kill_everything();
        char line[64];
        snprintf(line, sizeof(line), "exec-failed %d\n", exec_error);
        report(line);
        return 0;
    }

    int command_status = 0;
    int command_done = 0;
    while (!command_done) {
        struct pollfd fds[2] = {
            {.fd = signals, .events = POLLIN},
            {.fd = STATUS_FD, .events = 0},
        };
        int ready = poll(fds, 2, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (fds[1].revents & (POLLERR | POLLHUP | POLLNVAL)) {
            // The supervisor is gone: nothing may outlive it.
            kill_everything();
            return 0;
        }
        if (!(fds[0].revents & POLLIN)) continue;
        struct signalfd_siginfo info;
        if (read(signals, &info, sizeof(info)) != (ssize_t)sizeof(info)) continue;
        if ((int)info.ssi_signo == SIGCHLD) {
            int status;
            pid_t reaped;
            while ((reaped = waitpid(-1, &status, WNOHANG)) > 0) {
                if (reaped == command) {
                    command_status = status;
                    command_done = 1;
                }
            }
        } else {
            // Forward to the command's whole process group.
            kill(-command, (int)info.ssi_signo);
        }
    }

    kill_everything();
    char line[64];
    if (!command_done) snprintf(line, sizeof(line), "signaled %d\n", SIGKILL); // poll failed: we killed it
    else if (WIFSIGNALED(command_status)) snprintf(line, sizeof(line), "signaled %d\n", WTERMSIG(command_status));
    else snprintf(line, sizeof(line), "exited %d\n", WEXITSTATUS(command_status));
    report(line);
    return 0;
}
