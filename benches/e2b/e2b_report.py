"""e2b-report: the E2B surface measured with the official E2B SDK, beside SoulBox's own REST API
doing the same work in the same run.

Usage: target/e2b-venv/bin/python benches/e2b/e2b_report.py [path to the soulbox binary]

Starts `soulbox serve` (API keys, its database, workspaces and checkpoints in a fresh directory) on a free loopback port, then:
- `Sandbox.create()` + a first `run_code("1+1")`, over 20 sandboxes (each killed after, untimed);
- `run_code("1+1")` in a live sandbox;
- `commands.run("echo hi")` in a live sandbox whose container already runs;
and the same three through `/v1` with httpx (the SDK's own HTTP client library) as the baseline.
Prints a Markdown table of p50 / p99 and the ratio (baseline / SDK).
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

SANDBOXES = 20
CELLS = 200
COMMANDS = 100


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(work, runs):
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def start_server(binary, home):
    database = f"sqlite://{home}/soulbox.db"
    key = subprocess.run(
        [binary, "--database-url", database, "keys", "create", "--tenant", "bench"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    port = free_port()
    log = open(f"{home}/server.log", "w+")
    server = subprocess.Popen(
        [binary, "--database-url", database, "--set", f"storage.workspace_root={home}/workspaces",
         "--set", f"storage.snapshot_dir={home}/checkpoints",
         "--set", "auth.requests_per_second=100000", "--set", "auth.burst=100000",
         "--set", "auth.max_sandboxes_per_tenant=1000",
         "serve", "--addr", f"127.0.0.1:{port}"],
        stderr=log,
    )
    # Its log goes to a file, never a pipe nobody reads (a full pipe would stall the server).
    deadline = time.monotonic() + 60
    while "listening on" not in open(log.name).read():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("soulbox serve did not start:\n" + open(log.name).read())
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}", key


def sdk_samples(url, key):
    os.environ.update(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=key)
    from e2b_code_interpreter import Sandbox

    create = []
    for _ in range(SANDBOXES + 1):
        started = time.perf_counter()
        sbx = Sandbox.create()
        sbx.run_code("1+1")
        create.append((time.perf_counter() - started) * 1000)
        sbx.kill()
    sbx = Sandbox.create()
    sbx.run_code("1+1")
    cells = timed(lambda: sbx.run_code("1+1"), CELLS)
    sbx.commands.run("echo warm")
    commands = timed(lambda: sbx.commands.run("echo hi"), COMMANDS)
    sbx.kill()
    return create[1:], cells, commands


def rest_samples(url, key):
    client = httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=60)

    def create_and_run():
        sandbox = client.post("/v1/sandboxes", json={"template": "data-science"}).json()["id"]
        client.post(f"/v1/sandboxes/{sandbox}/execute", json={"code": "1+1"}).raise_for_status()
        return sandbox

    create = []
    for _ in range(SANDBOXES + 1):
        started = time.perf_counter()
        sandbox = create_and_run()
        create.append((time.perf_counter() - started) * 1000)
        client.delete(f"/v1/sandboxes/{sandbox}")
    sandbox = create_and_run()
    cells = timed(lambda: client.post(f"/v1/sandboxes/{sandbox}/execute", json={"code": "1+1"}).raise_for_status(), CELLS)
    client.post(f"/v1/sandboxes/{sandbox}/commands", json={"command": "echo warm"}).raise_for_status()
    commands = timed(
        lambda: client.post(f"/v1/sandboxes/{sandbox}/commands", json={"command": "echo hi"}).raise_for_status(), COMMANDS
    )
    client.delete(f"/v1/sandboxes/{sandbox}")
    return create[1:], cells, commands


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/soulbox"
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as home:
        server, url, key = start_server(binary, home)
        try:
            rest = rest_samples(url, key)
            sdk = sdk_samples(url, key)
        finally:
            server.terminate()  # a graceful stop: the quota mounts of workspaces go with it
            server.wait()
    names = [
        f"`Sandbox.create()` + first `run_code('1+1')` ({SANDBOXES} sandboxes)",
        f"`run_code('1+1')` in a live sandbox ({CELLS} cells)",
        f"`commands.run('echo hi')`, container running ({COMMANDS} commands)",
    ]
    print("| measure (E2B SDK 2.63.0 / e2b-code-interpreter 2.11.5) | SDK p50 | SDK p99 "
          "| baseline: SoulBox REST p50 | ratio (baseline / SDK) |")
    print("|---|---|---|---|---|")
    for name, mine, base in zip(names, sdk, rest):
        p50, p99, b50 = percentile(mine, 0.5), percentile(mine, 0.99), percentile(base, 0.5)
        print(f"| {name} | {p50:.1f} ms | {p99:.1f} ms | {b50:.1f} ms | {b50 / p50:.2f}x |")
    print(f"\nE2B's own create-to-first-command median, measured independently (ComputeSDK, 2026): about 490 ms.")
    print(f"commands.run('echo hi') p50 {percentile(sdk[2], 0.5):.1f} ms against the 15 ms target; "
          f"run_code median {statistics.median(sdk[1]):.2f} ms")


if __name__ == "__main__":
    main()
