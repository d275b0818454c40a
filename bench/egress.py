"""Egress proxy benchmark: a 100 MiB download and small requests, from a sandbox through
stockade's proxy, beside the same client run directly on the host.

Usage: egress.py STOCKADE [RUNS] [REQUESTS]   (prints JSON)

The server runs on the host's loopback (sendfile for the large file, so that it is not
the bottleneck). The client is the same Python script in both places and times itself,
so the sandbox's start-up is not part of any figure:
  - direct: the script on the host, straight to the server;
  - proxy: the script in `stockade run`, through the bridge (plain HTTP, relayed);
  - tunnel: the same through a CONNECT tunnel (what HTTPS uses; the bytes are relayed
    without being parsed);
  - tinyproxy: a small forwarding proxy users might otherwise put in front of an
    agent (no sandbox, no address checks), run on the host, both ways, as a peer.
"""
import shutil
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STOCKADE = sys.argv[1]
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
REQUESTS = int(sys.argv[3]) if len(sys.argv) > 3 else 300
SIZE = 100 << 20

CLIENT = r'''
import json, socket, sys, time
mode, host, port, size, runs, requests, proxy = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
target = "%s:%d" % (host, port)

def connect():
    if mode == "direct":
        return socket.create_connection((host, port))
    return socket.create_connection(("127.0.0.1", proxy))

def request(path):
    s = connect()
    if mode == "tunnel":
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(4096)
        assert answer.split(b" ")[1] == b"200", answer
        line = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, target)
    elif mode == "proxy":
        line = "GET http://%s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (target, path, target)
    else:
        line = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, target)
    s.sendall(line.encode())
    total = 0
    buffer = bytearray(1 << 20)
    while True:
        got = s.recv_into(buffer)
        if not got:
            break
        total += got
    s.close()
    return total

downloads = []
for _ in range(runs):
    start = time.perf_counter()
    got = request("/blob")
    downloads.append(time.perf_counter() - start)
    assert got >= size, got
latencies = []
for _ in range(requests):
    start = time.perf_counter()
    request("/small")
    latencies.append(time.perf_counter() - start)
print(json.dumps({"download_seconds": downloads, "request_seconds": latencies}))
'''


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    blob = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/blob":
            self.send_response(200)
            self.send_header("Content-Length", str(SIZE))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            with open(Handler.blob, "rb") as handle:
                offset = 0
                while offset < SIZE:
                    offset += os.sendfile(self.connection.fileno(), handle.fileno(), offset, SIZE - offset)
        else:
            body = b"x" * 100
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        self.close_connection = True


def main():
    with tempfile.TemporaryDirectory() as directory:
        Handler.blob = os.path.join(directory, "blob")
        with open(Handler.blob, "wb") as handle:
            handle.truncate(SIZE)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        workspace = os.path.join(directory, "workspace")
        os.mkdir(workspace)
        with open(os.path.join(workspace, "client.py"), "w") as handle:
            handle.write(CLIENT)
        policy = os.path.join(directory, "policy.yaml")
        with open(policy, "w") as handle:
            handle.write("version: 1\nnetwork: {mode: allowlist, allow: [{host: 127.0.0.1, ports: [%d]}]}\n" % port)
        arguments = ["127.0.0.1", str(port), str(SIZE), str(RUNS), str(REQUESTS)]
        client = os.path.join(workspace, "client.py")

        def host_client(mode, proxy_port=0):
            done = subprocess.run([sys.executable, client, mode] + arguments + [str(proxy_port)],
                                  check=True, capture_output=True, text=True)
            return json.loads(done.stdout)

        results = {"direct": host_client("direct")}
        for mode in ("proxy", "tunnel"):
            run = subprocess.run([STOCKADE, "run", "--policy", policy, "--workspace", workspace, "--timeout", "10m", "--",
                                  "python3", "/workspace/client.py", mode] + arguments + ["3128"],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"stockade {mode} run failed ({run.returncode}): {run.stderr}")
            results["stockade_" + mode] = json.loads(run.stdout)
        tinyproxy = shutil.which("tinyproxy") or ("/usr/bin/tinyproxy" if os.path.exists("/usr/bin/tinyproxy") else None)
        if tinyproxy:
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            proxy_port = probe.getsockname()[1]
            probe.close()
            config = os.path.join(directory, "tinyproxy.conf")
            with open(config, "w") as handle:
                handle.write(f"Port {proxy_port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 100\nLogLevel Critical\n"
                             f"Allow 127.0.0.1\nConnectPort {port}\nDisableViaHeader Yes\n")
            peer = subprocess.Popen([tinyproxy, "-d", "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for _ in range(100):
                    try:
                        socket.create_connection(("127.0.0.1", proxy_port)).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                for mode in ("proxy", "tunnel"):
                    results["tinyproxy_" + mode] = host_client(mode, proxy_port)
            finally:
                peer.terminate()
                peer.wait()
        server.shutdown()

    summary = {"size_bytes": SIZE, "runs": RUNS, "requests": REQUESTS}
    for mode, data in results.items():
        download = statistics.median(data["download_seconds"])
        summary[mode] = {
            "download_median_s": download,
            "throughput_mib_s": SIZE / download / (1 << 20),
            "request_median_ms": statistics.median(data["request_seconds"]) * 1000,
            "request_p90_ms": sorted(data["request_seconds"])[int(len(data["request_seconds"]) * 0.9)] * 1000,
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
