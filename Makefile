# stockade: build, run and test. `make run` and `make test` work on a fresh machine.
SWIFT ?= swift
CC ?= cc
BUILD := .build
INIT_CFLAGS := -static -Os -s -Wall -Wextra -Werror -fstack-protector-strong -D_FORTIFY_SOURCE=2
# musl makes stockade-init about 35 KB instead of 770 KB with glibc: it is copied into
# a sealed memfd on every start, so size is start-up time.
INIT_CC := $(shell command -v musl-gcc 2>/dev/null || echo $(CC))

.PHONY: all deps debug release run test bench clean fuzz-guest mcp-e2e

all: release

deps:
	@scripts/install-deps.sh

# stockade-init is plain C linked statically (it runs as PID 1 in roots that may hold
# no C library); SwiftPM would link it through swiftc with the Swift runtime.
INIT_SOURCES := Sources/stockade-init/main.c Sources/stockade-init/session.c Sources/stockade-init/guest_protocol.c
$(BUILD)/stockade-init: $(INIT_SOURCES) Sources/stockade-init/guest_protocol.h | deps
	@mkdir -p $(BUILD)
	$(INIT_CC) $(INIT_CFLAGS) -o $@ $(INIT_SOURCES)

debug: deps $(BUILD)/stockade-init
	$(SWIFT) build --build-tests
	cp $(BUILD)/stockade-init $(BUILD)/debug/stockade-init

# The shipped binary is fully static (Swift runtime, Foundation, libseccomp and the C
# library): a dynamically linked Foundation costs about 10 ms per start, and the dynamic
# loader still about 1.5 ms with only the C libraries left dynamic. The linker warns that
# glibc's NSS and dlopen need the shared libraries at run time; stockade calls neither
# (no user or host lookups), and the tests pass against this binary.
RELEASE_FLAGS := -c release --static-swift-stdlib -Xswiftc -static-executable
# stockade-mcp links Foundation's networking (libcurl), which a fully static executable
# cannot; it is built with the Swift libraries static and the C libraries dynamic, in a
# build folder of its own so that the two flag sets do not rebuild each other.
release: deps $(BUILD)/stockade-init
	$(SWIFT) build $(RELEASE_FLAGS) --product stockade
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(BUILD)-mcp --product stockade-mcp
	cp $(BUILD)-mcp/release/stockade-mcp $(BUILD)/release/stockade-mcp
	cp $(BUILD)/stockade-init $(BUILD)/release/stockade-init

# The main job on the built-in default policy: a real command in a sandbox.
run: release
	$(BUILD)/release/stockade run -- sh -c 'echo "hello from $$(hostname) as $$(id -un) (uid $$(id -u))"; echo "cwd: $$(pwd)"; ls /; cat /etc/passwd'

test: debug
	$(SWIFT) test --skip-build
	$(MAKE) --no-print-directory fuzz-guest
	$(MAKE) --no-print-directory mcp-e2e

# `stockade mcp` driven by a client nobody here wrote: the official MCP Python SDK, in a
# virtual environment of its own (pinned, so that a new release cannot change the run).
MCP_VENV := $(BUILD)/mcp-venv
MCP_SDK := mcp==2.3.0
$(MCP_VENV)/.installed:
	python3 -m venv $(MCP_VENV)
	$(MCP_VENV)/bin/pip install -q --disable-pip-version-check "$(MCP_SDK)"
	touch $@

mcp-e2e: $(MCP_VENV)/.installed
	$(MCP_VENV)/bin/python tests/mcp_e2e.py $(BUILD)/debug/stockade

# stockade-init's frame parser under libFuzzer, AddressSanitizer and UBSan (the Swift
# toolchain's clang carries libFuzzer). `make test` runs it for FUZZ_RUNS inputs.
FUZZ_RUNS ?= 2000000
FUZZ_CC ?= clang
$(BUILD)/guest-fuzz: fuzz/guest_protocol_fuzz.c Sources/stockade-init/guest_protocol.c Sources/stockade-init/guest_protocol.h
	@mkdir -p $(BUILD)
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -ISources/stockade-init \
		-o $@ fuzz/guest_protocol_fuzz.c Sources/stockade-init/guest_protocol.c

fuzz-guest: $(BUILD)/guest-fuzz
	@mkdir -p $(BUILD)/fuzz-corpus
	$(BUILD)/guest-fuzz -runs=$(FUZZ_RUNS) -seed=1 -max_len=4096 $(BUILD)/fuzz-corpus fuzz/corpus-guest

bench: release $(MCP_VENV)/.installed
	@scripts/install-deps.sh --bench
	$(SWIFT) build $(RELEASE_FLAGS) --product stockade-bench
	bench/run.sh

clean:
	rm -rf $(BUILD) $(BUILD)-mcp
