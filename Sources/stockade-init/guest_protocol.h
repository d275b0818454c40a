// The framed protocol between the supervisor and stockade-init in session mode.
// docs/guest-protocol.md describes it; the Swift side is StockadeIsolation's
// GuestChannel. Every frame: a 4-byte little-endian length N (the bytes that follow:
// type and payload, 1 <= N <= GUEST_MAX_FRAME), a 1-byte type, the payload. Integers
// are little-endian.
#ifndef STOCKADE_GUEST_PROTOCOL_H
#define STOCKADE_GUEST_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#define GUEST_PROTOCOL_VERSION 1u
/// Largest frame (type and payload) either side sends or accepts.
#define GUEST_MAX_FRAME (1u << 20)
/// Most arguments and environment entries in one EXEC.
#define GUEST_MAX_STRINGS 8192u

enum guest_frame_type {
    // Supervisor to guest.
    GUEST_EXEC = 0x01,   // u32 id, u32 wall_ms, u32 cpu_ms, u64 output_max, u16 argc, u16 envc, strings
    GUEST_SIGNAL = 0x02, // u32 id, u32 signal
    // Guest to supervisor.
    GUEST_READY = 0x80,   // u32 protocol version
    GUEST_STARTED = 0x81, // u32 id, i32 pid (in the sandbox's PID namespace)
    GUEST_STDOUT = 0x82,  // u32 id, bytes
    GUEST_STDERR = 0x83,  // u32 id, bytes
    GUEST_EXITED = 0x84,  // u32 id, u8 how, u8 limit, u16 zero, i32 value, u64 cpu_us, u64 maxrss_kib
    GUEST_FAILED = 0x85,  // u32 id, i32 errno (the command could not be started)
};

/// GUEST_EXITED's `how`.
enum guest_exit_how { GUEST_HOW_EXITED = 0, GUEST_HOW_SIGNALED = 1 };

/// GUEST_EXITED's `limit`: the per-action limit that ended it, if one did.
enum guest_limit { GUEST_LIMIT_NONE = 0, GUEST_LIMIT_WALL = 1, GUEST_LIMIT_OUTPUT = 2, GUEST_LIMIT_CPU = 3 };

/// A parsed EXEC. The string pointers point into the payload the parser was given;
/// `argv` and `envp` are NULL-terminated arrays the parser allocated (free them with
/// guest_exec_free).
struct guest_exec {
    uint32_t id;
    uint32_t wall_ms;    // 0: no wall-time limit for this action
    uint32_t cpu_ms;     // 0: none
    uint64_t output_max; // 0: none; stdout and stderr together
    const char *cwd;
    char **argv;
    char **envp;
};

struct guest_signal {
    uint32_t id;
    uint32_t signal;
};

/// Parses an EXEC payload. Returns 0, or a negative errno-style code (-EINVAL for a
/// malformed payload, -ENOMEM). Every string must be NUL-terminated inside the payload,
/// the payload must be consumed exactly, argv[0] and cwd must be non-empty, cwd
/// absolute, and every environment entry must hold a '='.
int guest_parse_exec(const uint8_t *payload, size_t length, struct guest_exec *out);

void guest_exec_free(struct guest_exec *exec);

/// Parses a SIGNAL payload (exactly 8 bytes, signal 1..64). Returns 0 or -EINVAL.
int guest_parse_signal(const uint8_t *payload, size_t length, struct guest_signal *out);

/// Splits the next whole frame off `buffer[0..length)`. Returns the number of bytes it
/// takes (header included) and sets *type, *payload and *payload_length; 0 when more
/// bytes are needed; -EINVAL for a length of 0 or above GUEST_MAX_FRAME.
long guest_next_frame(const uint8_t *buffer, size_t length, uint8_t *type, const uint8_t **payload, size_t *payload_length);

static inline uint32_t guest_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void guest_put_u32(uint8_t *p, uint32_t value) {
    p[0] = (uint8_t)value;
    p[1] = (uint8_t)(value >> 8);
    p[2] = (uint8_t)(value >> 16);
    p[3] = (uint8_t)(value >> 24);
}

static inline void guest_put_u64(uint8_t *p, uint64_t value) {
    guest_put_u32(p, (uint32_t)value);
    guest_put_u32(p + 4, (uint32_t)(value >> 32));
}

#endif
