// libFuzzer target for stockade-init's frame parser (make fuzz-guest). Splits the input
// into frames the way the session loop does and parses each one as its type says,
// then parses the whole input as an EXEC and a SIGNAL payload too. Under AddressSanitizer
// and UBSan any read past a payload, leak or overflow stops the run.
#include "guest_protocol.h"

#include <stdint.h>
#include <string.h>

static void check_exec(const uint8_t *payload, size_t length) {
    struct guest_exec exec;
    if (guest_parse_exec(payload, length, &exec) == 0) {
        // What the session loop then reads: every string, to its NUL.
        size_t total = strlen(exec.cwd);
        for (char **p = exec.argv; *p != NULL; p++) total += strlen(*p);
        for (char **p = exec.envp; *p != NULL; p++) total += strlen(*p);
        if (total > length) __builtin_trap();
        guest_exec_free(&exec);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t offset = 0;
    while (offset < size) {
        uint8_t type;
        const uint8_t *payload;
        size_t payload_length;
        long taken = guest_next_frame(data + offset, size - offset, &type, &payload, &payload_length);
        if (taken <= 0) break;
        if (payload + payload_length > data + size) __builtin_trap();
        if (type == GUEST_EXEC) check_exec(payload, payload_length);
        if (type == GUEST_SIGNAL) {
            struct guest_signal signal;
            (void)guest_parse_signal(payload, payload_length, &signal);
        }
        offset += (size_t)taken;
    }
    check_exec(data, size);
    struct guest_signal signal;
    (void)guest_parse_signal(data, size, &signal);
    return 0;
}
