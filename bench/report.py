"""Turns hyperfine's JSON exports into bench/RESULTS.md: medians and ratios."""
import json
import os
import platform
import statistics
import sys
import time

out, stockade_kib, bwrap_kib = sys.argv[1], sys.argv[2], sys.argv[3]


def table(name, title):
    with open(os.path.join(out, name + ".json")) as handle:
        results = json.load(handle)["results"]
    medians = {r["command"]: statistics.median(r["times"]) * 1000 for r in results}
    bare = medians["bare"]
    bwrap = medians.get("bubblewrap")
    lines = [f"### {title}", "", "| runner | median (ms) | × bare | × bubblewrap |", "|---|---:|---:|---:|"]
    for runner, median in medians.items():
        lines.append(f"| {runner} | {median:.2f} | {median / bare:.2f} | {median / bwrap:.2f} |")
    return "\n".join(lines) + "\n"


with open(os.path.join(out, "inprocess.json")) as handle:
    inprocess = json.load(handle)

print("# Benchmark results")
print()
print(f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, Linux {platform.release()}, "
      f"{os.cpu_count()} cores, by `make bench` (bench/run.sh): hyperfine, all runners side by side "
      "in one run per workload. The machine is shared and noisy: compare ratios, not absolute times.")
print()
print(table("true", "Start-up: `/bin/true`"))
print(table("find", "Syscall-heavy: `find /usr/lib -name '*.so'`"))
skip = os.path.join(out, "gvisor-skip.txt")
if os.path.exists(skip):
    print("### gVisor tier")
    print()
    print("Skipped: stockade could not run its gvisor tier here: " + open(skip).read().strip().replace("\n", " "))
    print()
else:
    print("### gVisor tier beside bare runsc")
    print()
    print("`runsc do` (the host's root read-only under a tmpfs overlay) against `stockade run --tier gvisor` "
          "(the plan's bundle, the guest agent, the seccomp filter, cgroup limits), same runsc platform. "
          "Target: stockade within 10% of bare runsc on every row.")
    print()
    print("| workload | bare (ms) | runsc do (ms) | stockade gvisor (ms) | stockade ÷ runsc |")
    print("|---|---:|---:|---:|---:|")
    for name, title in [("true", "`/bin/true`"), ("python", "CPU-bound Python loop"), ("find", "`find /usr/lib/x86_64-linux-gnu -name '*.so*'`")]:
        with open(os.path.join(out, f"gvisor-{name}.json")) as handle:
            results = {r["command"]: statistics.median(r["times"]) * 1000 for r in json.load(handle)["results"]}
        ratio = results["stockade gvisor"] / results["runsc do"]
        print(f"| {title} | {results['bare']:.1f} | {results['runsc do']:.1f} | {results['stockade gvisor']:.1f} | {ratio:.2f} |")
    print()
print("### In-process spawn (library call, no CLI start-up)")
print()
print("| what | median (ms) |")
print("|---|---:|")
print(f"| bare fork+exec+wait of /bin/true | {inprocess['bare_ms']:.3f} |")
print(f"| `Runner.run` of /bin/true (namespaces tier) | {inprocess['sandbox_ms']:.3f} |")
print(f"| difference | {inprocess['sandbox_ms'] - inprocess['bare_ms']:.3f} |")
print()

with open(os.path.join(out, "decisions.json")) as handle:
    decisions = json.load(handle)
print(f"### Validation layer: one decision against a {decisions['rules']}-rule policy")
print()
print("Median over batches of 2,000 decisions (`stockade-bench --decisions`). Target: under 5 µs.")
print()
print("| action | decision | median (µs) |")
print("|---|---|---:|")
for name, action in [("exec", "exec git status --short"), ("read_file", "read_file src/module/main.swift"),
                     ("http", "http GET https://files.pythonhosted.org/…")]:
    print(f"| `{action}` | {decisions[name + '_decision']} | {decisions[name + '_us']:.2f} |")
print()

with open(os.path.join(out, "toolset.json")) as handle:
    toolset = json.load(handle)
print(f"### Toolset root ({', '.join(toolset['toolset'])}), cached, against the host's /usr")
print()
print("In-process medians (`stockade-bench --toolset`). Target: at most 2 ms added to a start.")
print()
print("| step | whole /usr (ms) | toolset (ms) | added (ms) |")
print("|---|---:|---:|---:|")
print(f"| plan | {toolset['plan_ms']:.3f} | {toolset['plan_toolset_ms']:.3f} | {toolset['plan_toolset_ms'] - toolset['plan_ms']:.3f} |")
print(f"| start and run `sh -c :` | {toolset['run_ms']:.3f} | {toolset['run_toolset_ms']:.3f} | {toolset['run_toolset_ms'] - toolset['run_ms']:.3f} |")
print()

with open(os.path.join(out, "session.json")) as handle:
    session = json.load(handle)
print("### Sessions")
print()
print("In-process medians (`stockade-bench --session`). Targets: an `exec` in a warm session within 1 ms of a "
      "bare fork+exec; a session's start to its first result under 10 ms.")
print()
print("| what | median (ms) | over bare (ms) |")
print("|---|---:|---:|")
print(f"| bare fork+exec+wait of /bin/true | {session['bare_ms']:.3f} | |")
print(f"| guest agent `exec` of /bin/true, warm session | {session['guest_exec_ms']:.3f} | {session['guest_exec_ms'] - session['bare_ms']:.3f} |")
print(f"| `Session.perform` (policy, labels, agent) | {session['perform_ms']:.3f} | {session['perform_ms'] - session['bare_ms']:.3f} |")
print(f"| session start to first result | {session['start_to_first_result_ms']:.3f} | |")
print()

with open(os.path.join(out, "mcp.json")) as handle:
    mcp = json.load(handle)
print("### MCP round trip")
print()
print("`tools/call` of `run_command` (`/bin/true`) through the official Python SDK over stdio, "
      "beside Python's `subprocess.run` of the same program (medians).")
print()
print("| what | median (ms) |")
print("|---|---:|")
print(f"| `subprocess.run(['/bin/true'])` | {mcp['subprocess_ms']:.3f} |")
print(f"| MCP `run_command` through `stockade mcp` | {mcp['mcp_call_ms']:.3f} |")
print()
with open(os.path.join(out, "egress.json")) as handle:
    egress = json.load(handle)
direct = egress["direct"]
print("### Egress proxy")
print()
print(f"A {egress['size_bytes'] >> 20} MiB download (median of {egress['runs']}) and a 100-byte GET "
      f"(median of {egress['requests']}, a new connection each), from a Python client that times itself: "
      "directly on the host, from a sandbox through stockade's proxy (plain HTTP relayed, or a CONNECT "
      "tunnel as HTTPS uses), and on the host through tinyproxy. All on loopback.")
print()
print("| path | throughput (MiB/s) | vs direct | request median (ms) | added (ms) | p90 (ms) |")
print("|---|---:|---:|---:|---:|---:|")
names = {
    "direct": "direct", "stockade_proxy": "stockade, plain HTTP", "stockade_tunnel": "stockade, CONNECT tunnel",
    "tinyproxy_proxy": "tinyproxy, plain HTTP", "tinyproxy_tunnel": "tinyproxy, CONNECT tunnel",
}
for key, label in names.items():
    if key not in egress:
        continue
    row = egress[key]
    print(f"| {label} | {row['throughput_mib_s']:.0f} | {row['throughput_mib_s'] / direct['throughput_mib_s']:.2f} | "
          f"{row['request_median_ms']:.3f} | {row['request_median_ms'] - direct['request_median_ms']:.3f} | {row['request_p90_ms']:.3f} |")
print()
with open(os.path.join(out, "leaks.json")) as handle:
    leaks = json.load(handle)
ours, peer = leaks["stockade"], leaks["detect_secrets"]
print("### Leak guard")
print()
print(f"One thread scanning {ours['megabytes']:.0f} MiB of generated text (logs, code, JSON, base64, hashes, UUIDs) "
      f"with {ours['secrets']} known secrets planted {ours['planted']} times in four encodings, every rule and the entropy "
      f"detector on; detect-secrets {peer['version']} (default plugins) scanning the first {peer['megabytes']} MiB of the same file. "
      "Target: over 200 MiB/s.")
print()
print("| scanner | MiB/s | findings |")
print("|---|---:|---:|")
print(f"| stockade leak guard | {ours['mib_per_second']:.0f} | {ours['findings']} |")
if "mib_per_second_without_entropy" in ours:
    print(f"| stockade, known secrets and credential rules (no entropy) | {ours['mib_per_second_without_entropy']:.0f} | |")
    print(f"| stockade, known secrets only | {ours['mib_per_second_known_secrets_only']:.0f} | |")
print(f"| detect-secrets | {peer['mib_per_second']:.2f} | {peer['findings']} (of {peer['megabytes']} MiB) |")
print()
with open(os.path.join(out, "audit.json")) as handle:
    audit = json.load(handle)
print("### Audit log")
print()
print(f"{audit['events']} action entries appended one after another, each written and made durable (fdatasync) before the next, "
      f"with an Ed25519-signed checkpoint every {audit['checkpoint_every']}: what recording costs an action on this machine's disk.")
print()
print("| what | events/s | per event (ms) |")
print("|---|---:|---:|")
print(f"| append + fdatasync | {audit['events_per_second']:.0f} | {1000 / audit['events_per_second']:.3f} |")
print()
print("### Peak memory (max RSS) running `/bin/true`")
print()
print("| runner | KiB |")
print("|---|---:|")
print(f"| stockade (supervisor) | {stockade_kib} |")
print(f"| bubblewrap | {bwrap_kib} |")

analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
if os.path.exists(analysis):
    print()
    with open(analysis) as handle:
        print(handle.read().rstrip())
