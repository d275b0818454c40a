"""End to end: `stockade mcp` driven by the official MCP Python SDK over stdio.

Run by `make test` (make mcp-e2e) in a virtual environment the Makefile creates. Each
check prints one line; the first failure raises and exits non-zero.
"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

STOCKADE = sys.argv[1]
MARKER = f"4000.{os.getpid()}"  # a sleep of this length marks the session's processes


def host_processes(marker, whole_argument=True):
    """Host processes with `marker` as one argument (or, if not whole_argument, anywhere in the command line)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                line = handle.read()
        except OSError:
            continue
        if (marker.encode() in line.split(b"\0")) if whole_argument else (marker.encode() in line):
            count += 1
    return count


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok - {what}")


def text(result):
    return "".join(getattr(block, "text", "") for block in result.content)


async def session_checks(workspace, policy):
    params = StdioServerParameters(command=STOCKADE, args=["mcp", "--workspace", workspace, "--policy", policy])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            check(set(tools) == {"run_command", "read_file", "write_file", "list_files"}, "tools are listed")
            check(tools["read_file"].annotations.read_only_hint is True, "read_file is marked read-only")
            check(tools["run_command"].annotations.destructive_hint is True, "run_command is marked destructive")
            check("argv" in tools["run_command"].input_schema["properties"], "run_command has an input schema")

            result = await session.call_tool("run_command", {"argv": ["sh", "-c", "echo hello from $(hostname)"]})
            check(not result.is_error and "hello from stockade" in text(result), "a command runs in the sandbox")

            result = await session.call_tool("write_file", {"path": "notes/today.txt", "content": "written by the agent\n"})
            check(not result.is_error, "a file is written")
            result = await session.call_tool("read_file", {"path": "notes/today.txt"})
            check(text(result) == "written by the agent\n", "the file reads back")
            with open(os.path.join(workspace, "notes/today.txt")) as handle:
                check(handle.read() == "written by the agent\n", "the file is in the workspace")

            result = await session.call_tool("run_command", {"command": "git push origin main"})
            check(result.is_error and "denied by rule no-push: pushing needs a person" in text(result), "a denied action says which rule and why")

            result = await session.call_tool("read_file", {"path": ".env"})
            check(result.is_error and "hidden" in text(result), "a hidden file cannot be read")

            result = await session.call_tool("run_command", {"argv": ["sleep", "30"]})
            check(result.is_error and "limit exceeded: wall time (2s)" in text(result), "a limit ends the action and is named")

            result = await session.call_tool("run_command", {"command": f"sleep {MARKER} &"})
            check(not result.is_error, "a background process starts")
            result = await session.call_tool("run_command", {"argv": ["sh", "-c", "ls /proc | grep -c '^[0-9]'"]})
            check(int(text(result).split("--- stdout ---\n")[1].split()[0]) >= 2, "the background process is still there in the next call")
            check(host_processes(MARKER) == 1, "the background process runs on the host, in the sandbox")

            result = await session.call_tool("no_such_tool", {})
            check(result.is_error, "an unknown tool is an error result")
            result = await session.call_tool("run_command", {"argv": [], "bogus": 1})
            check(result.is_error and "bogus" in text(result), "a bad argument is named")
    for _ in range(50):
        if host_processes(MARKER) == 0:
            break
        time.sleep(0.1)
    check(host_processes(MARKER) == 0, "closing the connection ends every process of the session")


def killed_supervisor(workspace, policy):
    """The supervisor killed with SIGKILL: the sandbox must not outlive it."""
    marker = f"4001.{os.getpid()}"
    server = subprocess.Popen([STOCKADE, "mcp", "--workspace", workspace, "--policy", policy],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def send(message):
        server.stdin.write((json.dumps(message) + "\n").encode())
        server.stdin.flush()
        return json.loads(server.stdout.readline()) if "id" in message else None

    send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}})
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    reply = send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_command", "arguments": {"command": f"sleep {marker} &"}}})
    check("error" not in reply, "a background process starts under a supervisor about to be killed")
    check(host_processes(marker) == 1, "it is running")
    server.send_signal(signal.SIGKILL)
    server.wait()
    for _ in range(50):
        if host_processes(marker) == 0:
            break
        time.sleep(0.1)
    check(host_processes(marker) == 0, "after SIGKILL of the supervisor nothing of the sandbox is left")


async def http_checks(workspace, policy):
    """The same server over MCP's streamable HTTP transport: one sandbox per MCP session."""
    marker = f"4002.{os.getpid()}"
    server = subprocess.Popen([STOCKADE, "mcp", "--http", "0", "--workspace", workspace, "--policy", policy],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        line = server.stderr.readline().decode()
        check("listening on http://127.0.0.1:" in line, "the HTTP server listens on loopback")
        url = line.split("listening on ")[1].strip()

        import urllib.error
        import urllib.request
        initialize = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "page", "version": "1"}}}).encode()
        forged = urllib.request.Request(url, data=initialize, method="POST", headers={
            "Origin": "http://attacker.example", "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream"})
        try:
            urllib.request.urlopen(forged)
            status = 200
        except urllib.error.HTTPError as error:
            status = error.code
        check(status == 403, "a request from another origin (a web page) is refused before any sandbox starts")

        async with streamable_http_client(url) as (read, write, *_):
            async with ClientSession(read, write) as first:
                await first.initialize()
                result = await first.call_tool("run_command", {"command": "echo first > /tmp/mine"})
                check(not result.is_error, "a command runs over HTTP")
                async with streamable_http_client(url) as (read2, write2, *_):
                    async with ClientSession(read2, write2) as second:
                        await second.initialize()
                        result = await second.call_tool("run_command", {"argv": ["cat", "/tmp/mine"]})
                        check(result.is_error and "No such file" in text(result), "two MCP sessions are two sandboxes")
                        result = await second.call_tool("run_command", {"command": f"sleep {marker} &"})
                        check(not result.is_error and host_processes(marker) == 1, "the second session's background process runs")
                for _ in range(50):
                    if host_processes(marker) == 0:
                        break
                    time.sleep(0.1)
                check(host_processes(marker) == 0, "ending an MCP session (DELETE) ends its sandbox")
                result = await first.call_tool("run_command", {"argv": ["cat", "/tmp/mine"]})
                check(text(result).endswith("first\n"), "the other session goes on, with its state")
                result = await first.call_tool("run_command", {"command": "git push"})
                check(result.is_error and "no-push" in text(result), "a denial over HTTP names the rule")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()


class Hello(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = f"hello from {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


async def network_checks(workspace, config):
    """http_fetch and a command's curl, both through the egress proxy, to a server
    on the host's loopback that the policy lists by address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    policy = os.path.join(config, "networked.yaml")
    with open(policy, "w") as handle:
        handle.write(
            "version: 1\n"
            f"network: {{mode: allowlist, allow: [{{host: 127.0.0.1, ports: [{port}]}}]}}\n"
            "rules:\n"
            "  - {id: fetch-local, tool: http, where: {host: 127.0.0.1}, decision: allow}\n")
    params = StdioServerParameters(command=STOCKADE, args=["mcp", "--workspace", workspace, "--policy", policy])
    try:
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {tool.name: tool for tool in (await session.list_tools()).tools}
                check("http_fetch" in tools and tools["http_fetch"].annotations.open_world_hint is True,
                      "a networked policy lists http_fetch")
                result = await session.call_tool("http_fetch", {"url": f"http://127.0.0.1:{port}/page"})
                check(not result.is_error and "HTTP 200" in text(result) and "hello from /page" in text(result),
                      "http_fetch reaches an allowed host")
                result = await session.call_tool("http_fetch", {"url": f"http://127.0.0.1:{port + 1}/"})
                check(result.is_error and "network.allow" in text(result), "http_fetch to a port the policy does not grant is refused, naming the rule")
                result = await session.call_tool("http_fetch", {"url": "http://169.254.169.254/latest/meta-data/"})
                check(result.is_error, "http_fetch to the metadata address is refused")
                result = await session.call_tool("run_command", {"command": f"curl -sS --noproxy '' http://127.0.0.1:{port}/from-inside"})
                check(not result.is_error and "hello from /from-inside" in text(result), "a command's curl goes out through the proxy")
                result = await session.call_tool("run_command", {"command": "curl -sS http://example.com/"})
                check("refused by network.allow" in text(result), "a command's request to another host gets the proxy's refusal")
    finally:
        server.shutdown()


def gvisor_processes():
    """Host processes of stockade's gVisor sandboxes (runsc and its children)."""
    return host_processes("stockade-gvisor-", whole_argument=False)


async def gvisor_checks(workspace, policy):
    """The same MCP session on the gVisor tier (skipped, and said so, without runsc)."""
    doctor = json.loads(subprocess.run([STOCKADE, "doctor", "--json", "--runs", "0"], capture_output=True, check=True).stdout)
    tier = next(t for t in doctor["tiers"] if t["tier"] == "gvisor")
    if not tier["available"]:
        print(f"skip - gvisor tier: {tier['detail']}")
        return
    params = StdioServerParameters(command=STOCKADE, args=["mcp", "--tier", "gvisor", "--workspace", workspace, "--policy", policy])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("run_command", {"argv": ["sh", "-c", "echo hello from $(hostname); uname -r"]})
            check(not result.is_error and "hello from stockade" in text(result), "gvisor: a command runs in the sandbox")
            # gVisor's kernel reports itself as Linux 4.4.0, whatever the host runs.
            check("4.4.0" in text(result) and os.uname().release not in text(result), "gvisor: the kernel answering is gVisor's")
            result = await session.call_tool("write_file", {"path": "gvisor.txt", "content": "from the agent\n"})
            result = await session.call_tool("run_command", {"command": "cat gvisor.txt; echo kept > /tmp/state"})
            check(text(result).count("from the agent") == 1, "gvisor: a written file is seen by commands")
            result = await session.call_tool("run_command", {"argv": ["cat", "/tmp/state"]})
            check("kept" in text(result), "gvisor: state lasts across calls")
            result = await session.call_tool("read_file", {"path": ".env"})
            check(result.is_error and "hidden" in text(result), "gvisor: a hidden file cannot be read")
            result = await session.call_tool("run_command", {"argv": ["cat", ".env"]})
            check("do-not-leak" not in text(result), "gvisor: a hidden file cannot be read by a command")
            result = await session.call_tool("run_command", {"argv": ["sleep", "30"]})
            check(result.is_error and "limit exceeded: wall time (2s)" in text(result), "gvisor: a limit ends the action and is named")
            check(gvisor_processes() > 0, "gvisor: runsc runs the session")
    for _ in range(50):
        if gvisor_processes() == 0:
            break
        time.sleep(0.1)
    check(gvisor_processes() == 0, "gvisor: closing the connection ends the sandbox")

    # The supervisor killed with SIGKILL: runsc and its sandbox must not outlive it.
    server = subprocess.Popen([STOCKADE, "mcp", "--tier", "gvisor", "--workspace", workspace, "--policy", policy],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    server.stdin.write((json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}}) + "\n").encode())
    server.stdin.flush()
    server.stdout.readline()
    check(gvisor_processes() > 0, "gvisor: a session runs under a supervisor about to be killed")
    server.send_signal(signal.SIGKILL)
    server.wait()
    for _ in range(100):
        if gvisor_processes() == 0:
            break
        time.sleep(0.1)
    check(gvisor_processes() == 0, "gvisor: after SIGKILL of the supervisor nothing of the sandbox is left")


def main():
    with tempfile.TemporaryDirectory() as workspace, tempfile.TemporaryDirectory() as config:
        with open(os.path.join(workspace, ".env"), "w") as handle:
            handle.write("TOKEN=do-not-leak\n")
        policy = os.path.join(config, "policy.yaml")
        with open(policy, "w") as handle:
            handle.write(
                "version: 1\n"
                "limits: {wall: 2s}\n"
                "rules:\n"
                "  - {id: no-push, tool: exec, where: {argv: {prefix: [git, push]}}, decision: deny, reason: pushing needs a person}\n")
        asyncio.run(session_checks(workspace, policy))
        killed_supervisor(workspace, policy)
        asyncio.run(http_checks(workspace, policy))
        asyncio.run(network_checks(workspace, config))
        asyncio.run(gvisor_checks(workspace, policy))
    print("all MCP end-to-end checks passed")


if __name__ == "__main__":
    main()
