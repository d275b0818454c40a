#!/bin/sh
# Side-by-side start-up and syscall-heavy benchmark: bare exec, unshare, bubblewrap,
# firejail and stockade, in one hyperfine run per workload. Writes bench/RESULTS.md.
# Machines are shared and noisy: read the ratios, not the absolute times.
set -eu
cd "$(dirname "$0")/.."
STOCKADE=${STOCKADE:-$(pwd)/.build/release/stockade}
RUNS=${RUNS:-200}
OUT=$(pwd)/bench/out
mkdir -p "$OUT"
workspace=$(mktemp -d)
trap 'rm -rf "$workspace"' EXIT

# A comparable bubblewrap view: read-only /usr and merged-/usr links, fresh /proc,
# /dev and /tmp, every namespace unshared, a new session.
BWRAP="bwrap --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin --proc /proc --dev /dev --tmpfs /tmp --bind $workspace /workspace --chdir /workspace --unshare-all --die-with-parent --new-session --"
UNSHARE="unshare -Urpmn --fork --"
FIREJAIL="firejail --quiet --noprofile --net=none --private=$workspace --"
SANDBOX="$STOCKADE run --workspace $workspace --"

workload() { # name, command (one string, in shell-words quoting, as hyperfine -N reads it)
    name=$1
    command=$2
    hyperfine --runs "$RUNS" --warmup 10 -N --export-json "$OUT/$name.json" \
        -n bare "$command" \
        -n unshare "$UNSHARE $command" \
        -n bubblewrap "$BWRAP $command" \
        -n firejail "$FIREJAIL $command" \
        -n stockade "$SANDBOX $command" >"$OUT/$name.txt" 2>&1 || { cat "$OUT/$name.txt"; exit 1; }
}

# Every runner starts in the same (empty) directory.
cd "$workspace"
workload true /bin/true
RUNS=$((RUNS / 4)) workload find "sh -c 'find /usr/lib -name \"*.so\" >/dev/null'"

# The gVisor tier beside bare runsc (`runsc do`: the host's root read-only under a tmpfs
# overlay, no network, the same platform) and bare exec, three workloads. Skipped, and
# said so in the results, where runsc is missing or stockade cannot run it.
if $STOCKADE run --tier gvisor -- /bin/true 2>"$OUT/gvisor-skip.txt"; then
    rm -f "$OUT/gvisor-skip.txt"
    platform=$($STOCKADE doctor --json --runs 0 | python3 -c 'import json,sys; print(next(f["detail"] for f in json.load(sys.stdin)["facilities"] if f["name"] == "runsc").rsplit("using ", 1)[1])')
    RUNSC="runsc --network=none --ignore-cgroups --platform=$platform do"
    GVISOR="$STOCKADE run --tier gvisor --workspace $workspace --"
    gvisor_workload() { # name, command
        hyperfine --runs "${GVISOR_RUNS:-30}" --warmup 3 -N --export-json "$OUT/gvisor-$1.json" \
            -n bare "$2" -n "runsc do" "$RUNSC $2" -n "stockade gvisor" "$GVISOR $2" >"$OUT/gvisor-$1.txt" 2>&1 \
            || { cat "$OUT/gvisor-$1.txt"; exit 1; }
    }
    gvisor_workload true /bin/true
    gvisor_workload python "python3 -c 'sum(i * i for i in range(2000000))'"
    # /usr/lib whole takes over 10 s a run under gVisor's ptrace platform: a smaller tree.
    gvisor_workload find "sh -c 'find /usr/lib/x86_64-linux-gnu -name \"*.so*\" >/dev/null'"
fi
cd - >/dev/null

# In-process spawn through the library (no CLI start-up) against a bare fork+exec.
.build/release/stockade-bench --iterations "${INPROCESS_RUNS:-300}" >"$OUT/inprocess.json"

# The validation layer alone: decisions against a 50-rule policy.
.build/release/stockade-bench --decisions >"$OUT/decisions.json"

# A cached toolset root (python3 git sh) against the host's whole /usr: planning and
# start of the same command.
.build/release/stockade-bench --iterations "${TOOLSET_RUNS:-100}" --toolset python3 --toolset git --toolset sh >"$OUT/toolset.json"

# Sessions: exec in a warm session, and start to first result.
.build/release/stockade-bench --session --iterations "${SESSION_RUNS:-300}" >"$OUT/session.json"

# MCP: a run_command call through the official Python SDK, beside a direct subprocess.
.build/mcp-venv/bin/python bench/mcp_roundtrip.py "$STOCKADE" "${MCP_RUNS:-200}" >"$OUT/mcp.json"

# The egress proxy: a 100 MiB download and small requests through it, beside direct
# and beside tinyproxy (the client times itself; no sandbox start-up in the figures).
python3 bench/egress.py "$STOCKADE" "${EGRESS_RUNS:-5}" "${EGRESS_REQUESTS:-300}" >"$OUT/egress.json"

# The leak guard: 100 MiB of mixed text with 20 known secrets, one thread, beside
# detect-secrets (in a virtual environment of the benchmark's own) on a prefix of it.
if [ ! -x .build/bench-venv/bin/detect-secrets ]; then
    python3 -m venv .build/bench-venv
    .build/bench-venv/bin/pip install -q --disable-pip-version-check "detect-secrets==1.5.0"
fi
python3 bench/leaks.py .build/release/stockade-bench .build/bench-venv/bin/python "${LEAK_MEGABYTES:-100}" >"$OUT/leaks.json"

# Audit appends with fdatasync, signed checkpoints every 100: events per second.
.build/release/stockade-bench --audit --iterations "${AUDIT_EVENTS:-2000}" >"$OUT/audit.json"

# Peak memory (max RSS) of stockade itself running /bin/true.
peak_kib=$(/usr/bin/time -f '%M' $STOCKADE run -- /bin/true 2>&1 >/dev/null | tail -1)
bwrap_kib=$(/usr/bin/time -f '%M' $BWRAP /bin/true 2>&1 >/dev/null | tail -1)

python3 bench/report.py "$OUT" "$peak_kib" "$bwrap_kib" >bench/RESULTS.md
cat bench/RESULTS.md
