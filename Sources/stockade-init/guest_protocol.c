// Parsing of the supervisor's frames (see guest_protocol.h). Kept apart from the event
// loop so that it can be fuzzed on its own (fuzz/guest_protocol_fuzz.c).
#include "guest_protocol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

long guest_next_frame(const uint8_t *buffer, size_t length, uint8_t *type, const uint8_t **payload, size_t *payload_length) {
    if (length < 4) return 0;
    uint32_t frame = guest_get_u32(buffer);
    if (frame == 0 || frame > GUEST_MAX_FRAME) return -EINVAL;
    if (length - 4 < frame) return 0;
    *type = buffer[4];
    *payload = buffer + 5;
    *payload_length = frame - 1;
    return (long)frame + 4;
}

/// The next NUL-terminated string at *offset, advancing past its NUL; NULL when the
/// payload ends before one.
static const char *next_string(const uint8_t *payload, size_t length, size_t *offset) {
    if (*offset >= length) return NULL;
    const uint8_t *start = payload + *offset;
    const uint8_t *nul = memchr(start, 0, length - *offset);
    if (nul == NULL) return NULL;
    *offset += (size_t)(nul - start) + 1;
    return (const char *)start;
}

int guest_parse_exec(const uint8_t *payload, size_t length, struct guest_exec *out) {
    memset(out, 0, sizeof(*out));
    // id, wall_ms, cpu_ms (4 each), output_max (8), argc, envc (2 each).
    const size_t fixed = 4 + 4 + 4 + 8 + 2 + 2;
    if (length < fixed) return -EINVAL;
    out->id = guest_get_u32(payload);
    out->wall_ms = guest_get_u32(payload + 4);
    out->cpu_ms = guest_get_u32(payload + 8);
    out->output_max = (uint64_t)guest_get_u32(payload + 12) | (uint64_t)guest_get_u32(payload + 16) << 32;
    size_t argc = (size_t)payload[20] | (size_t)payload[21] << 8;
    size_t envc = (size_t)payload[22] | (size_t)payload[23] << 8;
    if (argc == 0 || argc + envc > GUEST_MAX_STRINGS) return -EINVAL;

    size_t offset = fixed;
    out->cwd = next_string(payload, length, &offset);
    if (out->cwd == NULL || out->cwd[0] != '/') return -EINVAL;
    out->argv = calloc(argc + 1, sizeof(char *));
    out->envp = calloc(envc + 1, sizeof(char *));
    if (out->argv == NULL || out->envp == NULL) {
        guest_exec_free(out);
        return -ENOMEM;
    }
    for (size_t i = 0; i < argc; i++) {
        const char *argument = next_string(payload, length, &offset);
        if (argument == NULL || (i == 0 && argument[0] == '\0')) {
            guest_exec_free(out);
            return -EINVAL;
        }
        out->argv[i] = (char *)argument;
    }
    for (size_t i = 0; i < envc; i++) {
        const char *entry = next_string(payload, length, &offset);
        if (entry == NULL || strchr(entry, '=') == NULL || entry[0] == '=') {
            guest_exec_free(out);
            return -EINVAL;
        }
        out->envp[i] = (char *)entry;
    }
    if (offset != length) {
        guest_exec_free(out);
        return -EINVAL;
    }
    return 0;
}

void guest_exec_free(struct guest_exec *exec) {
    free(exec->argv);
    free(exec->envp);
    exec->argv = NULL;
    exec->envp = NULL;
}

int guest_parse_signal(const uint8_t *payload, size_t length, struct guest_signal *out) {
    if (length != 8) return -EINVAL;
    out->id = guest_get_u32(payload);
    out->signal = guest_get_u32(payload + 4);
    if (out->signal < 1 || out->signal > 64) return -EINVAL;
    return 0;
}
