"""The HTTP load benchmark's baseline: a minimal HTTP server that runs each request's code in a
new native CPython process (`python3 -c`), the simplest conventional way to isolate runs.

Usage: subprocess_server.py  -> prints the port it listens on (127.0.0.1), then serves
POST / {"code": "..."} -> {"stdout": ..., "stderr": ..., "exit_code": ...}.
"""

import json
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK would add ~40 ms to every answer.
    disable_nagle_algorithm = True

    def do_POST(self):  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        run = subprocess.run([sys.executable, "-c", body["code"]], capture_output=True, text=True, timeout=30)
        reply = json.dumps({"stdout": run.stdout, "stderr": run.stderr, "exit_code": run.returncode}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default (5) resets connections under load

    def handle_error(self, request, client_address):
        pass  # a load generator closing its connections at the end is not news


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
