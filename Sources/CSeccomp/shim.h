#include <seccomp.h>

#include <linux/memfd.h>
#include <sys/syscall.h>
#include <unistd.h>

/// memfd_create(2) for Swift, which cannot see glibc's declaration (it is behind
/// _GNU_SOURCE) and cannot call the variadic syscall(2). libseccomp 2.5 exports a filter
/// only into a file descriptor; StockadeSystem exports into a memfd and reads it back.
/// Returns the new descriptor, or -1 with errno set.
static inline int stockade_memfd_create(const char *_Nonnull name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}

/// MFD_CLOEXEC from <linux/memfd.h>, as a value Swift can import.
static const unsigned int STOCKADE_MFD_CLOEXEC = MFD_CLOEXEC;
