"""Servers the egress tests start on the host: HTTP and HTTPS on loopback, and traps.

Usage: egress_server.py CERT KEY

Prints one line, "PORTS <http> <https> <trap-tcp> <trap-udp> <recorder>", once every
server is listening, then serves until stdin closes (the test that started it ends).

The recorder answers a connection with a small 200 once it has been quiet for half a
second, and keeps reading until the peer closes, keeping every byte: what a proxy sent beyond the one
request it relayed (a smuggled second request) shows there. /recorded on the HTTP
server returns the last connection's bytes.

  /echo         the request as JSON (method, path, headers, body length)
  /bytes/N      N bytes
  /redirect?to=URL   302 to URL
  /trap         how many TCP connections and UDP datagrams the traps received
  anything else "hello from <path>"

The traps listen on every address (0.0.0.0): a sandbox that could reach the host
directly, bypassing the proxy, would show up in their counts.
"""
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

trap_counts = {"tcp": 0, "udp": 0}
recorded = {"last": b""}
lock = threading.Lock()
CHUNK = b"x" * 65536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        received = 0
        while received < length:
            data = self.rfile.read(min(65536, length - received))
            if not data:
                break
            received += len(data)
        return received

    def _send(self, status, body, content_type="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        received = self._body()
        url = urlparse(self.path)
        if url.path == "/echo":
            body = json.dumps({
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_length": received,
            }).encode()
            self._send(200, body, "application/json")
        elif url.path.startswith("/bytes/"):
            count = int(url.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(count))
            self.end_headers()
            sent = 0
            while sent < count:
                piece = CHUNK[: min(len(CHUNK), count - sent)]
                self.wfile.write(piece)
                sent += len(piece)
        elif url.path == "/redirect":
            target = parse_qs(url.query).get("to", ["/"])[0]
            self._send(302, b"moved\n", extra=[("Location", target)])
        elif url.path == "/recorded":
            with lock:
                body = recorded["last"]
            self._send(200, body, "application/octet-stream")
        elif url.path == "/trap":
            with lock:
                body = json.dumps(trap_counts).encode()
            self._send(200, body, "application/json")
        else:
            self._send(200, ("hello from %s\n" % url.path).encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()


def trap_tcp(listener):
    while True:
        connection, _ = listener.accept()
        with lock:
            trap_counts["tcp"] += 1
        connection.close()


def trap_udp(receiver):
    while True:
        receiver.recvfrom(65536)
        with lock:
            trap_counts["udp"] += 1


def recorder(listener):
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=record_one, args=(connection,), daemon=True).start()


def record_one(connection):
    """Answers once the peer has been quiet for half a second (so a proxy relaying a
    body sends all of it first), then keeps reading until the peer closes."""
    data = b""
    answered = False
    connection.settimeout(0.5)
    deadline = time.time() + 15
    try:
        while time.time() < deadline:
            try:
                chunk = connection.recv(65536)
            except socket.timeout:
                if not answered and b"\r\n\r\n" in data:
                    answered = True
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nrecorded\n")
                    connection.shutdown(socket.SHUT_WR)
                continue
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    finally:
        connection.close()
        with lock:
            recorded["last"] = data


def main():
    cert, key = sys.argv[1], sys.argv[2]
    plain = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    secure = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    serve(plain)
    serve(secure)

    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", 0))
    tcp.listen(16)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 0))
    threading.Thread(target=trap_tcp, args=(tcp,), daemon=True).start()
    threading.Thread(target=trap_udp, args=(udp,), daemon=True).start()
    recording = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    recording.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    recording.bind(("127.0.0.1", 0))
    recording.listen(16)
    threading.Thread(target=recorder, args=(recording,), daemon=True).start()

    print("PORTS %d %d %d %d %d" % (plain.server_address[1], secure.server_address[1],
                                    tcp.getsockname()[1], udp.getsockname()[1], recording.getsockname()[1]), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
