"""Measures one peer of SoulBox the way `peers-report` measures SoulBox, and prints one JSON line.

    python peers.py eryx|monty|native [--baseline-python PATH]
    python peers.py eryx|monty --serve

- eryx: Grafana's Eryx (CPython on WASI in wasmtime), in process: `eryx.Sandbox().execute`
  for fresh executions (a new instance per call), `eryx.Session` for sessions.
- monty: Pydantic's Monty (a Rust interpreter for a subset of Python): a `Monty` pool of worker
  processes, a fresh session per `checkout()`, cells by `feed_run`.
- native: CPython itself, a new `python -c` process per fresh execution; a session is a
  process that `exec`s each line it reads from a pipe.

Every figure is a median (p50) or a rate; times are milliseconds. Private memory is the sum of
Private_Dirty over this process and its children, measured before and after opening the idle
sessions, divided by their number.

Eryx's and Monty's rows with 10 ms gaps are not in that line: `--serve` measures them in blocks
that `peers-report` interleaves with SoulBox's own (see `serve`), since a gapped row moves with
the minute it is measured in on a shared machine. Native CPython's are (it is no contender).
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time

FRESH_RUNS = 500
SESSION_RUNS = 500
GAP_S = 0.010
THROUGHPUT_S = 5.0
SESSIONS_FOR_MEMORY = 100
CODE = "print(1+1)"
CELL = "x = x + 1"


def p50(samples):
    return statistics.median(samples) * 1e3


def timed(fn, runs, gap=0.0):
    samples = []
    for _ in range(runs):
        if gap:
            time.sleep(gap)
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def rate(make_runner, threads):
    """Executions per second with `threads` threads each calling its own runner in a loop."""
    counts = [0] * threads
    stop = time.perf_counter() + THROUGHPUT_S
    barrier = threading.Barrier(threads)

    def loop(index):
        run = make_runner()
        barrier.wait()
        while time.perf_counter() < stop:
            run()
            counts[index] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def private_dirty_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith(("Private_Dirty:", "Private_Hugetlb:")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def family():
    """This process and its descendants."""
    pids, frontier = [os.getpid()], [os.getpid()]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as children:
                kids = [int(pid) for pid in children.read().split()]
        except FileNotFoundError:
            kids = []
        pids += kids
        frontier += kids
    return pids


def expect(output, wanted):
    if output != wanted:
        raise SystemExit(f"unexpected output {output!r}, wanted {wanted!r}")


def eryx_runners(stack):
    """Eryx's fresh execution and session cell, as `peers-report` times SoulBox's."""
    import eryx

    sandbox = eryx.Sandbox()
    session = eryx.Session()
    session.execute("x = 1")
    return {
        "fresh": lambda: expect(sandbox.execute(CODE).stdout_text, "2\n"),
        "cell": lambda: session.execute(CELL),
    }


def monty_runners(stack):
    """Monty's fresh execution (a fresh session per checkout) and session cell."""
    import pydantic_monty as monty

    cores = os.cpu_count()
    pool = stack.enter_context(monty.Monty(min_processes=cores, max_processes=cores))

    def fresh():
        out = monty.CollectString()
        with pool.checkout() as session:
            session.feed_run(CODE, print_callback=out)
        expect(out.output, "2\n")

    session = stack.enter_context(pool.checkout())
    session.feed_run("x = 1")
    return {"fresh": fresh, "cell": lambda: session.feed_run(CELL)}


def serve(runners):
    """Gapped samples on request: reads `fresh N` or `cell N` lines, and for each times N runs
    10 ms apart and prints `{"samples_ms": [...]}`. `peers-report` alternates such blocks with
    SoulBox's own, so every system's gapped row spans the same minutes."""
    with contextlib.ExitStack() as stack:
        run = runners(stack)
        for each in run.values():
            for _ in range(20):
                each()
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            workload, runs = line.split()
            samples = timed(run[workload], int(runs), GAP_S)
            print(json.dumps({"samples_ms": [s * 1e3 for s in samples]}), flush=True)


def eryx():
    import eryx

    sandbox = eryx.Sandbox()
    run = lambda: expect(sandbox.execute(CODE).stdout_text, "2\n")
    for _ in range(20):
        run()
    figures = {"fresh_b2b": p50(timed(run, FRESH_RUNS))}

    def runner():
        own = eryx.Sandbox()
        return lambda: own.execute(CODE)

    figures["fresh_per_s"] = rate(runner, 2 * os.cpu_count())

    def first_cell():
        session = eryx.Session()
        session.execute("x = 1")
        return session

    figures["session_first"] = p50(timed(first_cell, 50))
    session = first_cell()
    cell = lambda: session.execute(CELL)
    figures["cell_b2b"] = p50(timed(cell, SESSION_RUNS))
    before = private_dirty_kib(family())
    idle = [first_cell() for _ in range(SESSIONS_FOR_MEMORY)]
    figures["idle_session_mib"] = (private_dirty_kib(family()) - before) / 1024 / len(idle)
    return figures


def monty():
    import pydantic_monty as monty

    cores = os.cpu_count()
    with monty.Monty(min_processes=cores, max_processes=cores) as pool:

        def run():
            out = monty.CollectString()
            with pool.checkout() as session:
                session.feed_run(CODE, print_callback=out)
            expect(out.output, "2\n")

        for _ in range(20):
            run()
        figures = {
            "fresh_b2b": p50(timed(run, FRESH_RUNS)),
            "fresh_per_s": rate(lambda: run, 2 * cores),
        }

        def first_cell():
            checkout = pool.checkout()
            session = checkout.__enter__()
            session.feed_run("x = 1")
            checkout.__exit__(None, None, None)

        figures["session_first"] = p50(timed(first_cell, 50))
        with pool.checkout() as session:
            session.feed_run("x = 1")
            cell = lambda: session.feed_run(CELL)
            figures["cell_b2b"] = p50(timed(cell, SESSION_RUNS))
    # Each idle session holds a worker process of its own: a pool as large as the sessions.
    with monty.Monty(min_processes=1, max_processes=SESSIONS_FOR_MEMORY) as pool:
        before = private_dirty_kib(family())
        checkouts = [pool.checkout() for _ in range(SESSIONS_FOR_MEMORY)]
        for checkout in checkouts:
            checkout.__enter__().feed_run("x = 1")
        figures["idle_session_mib"] = (private_dirty_kib(family()) - before) / 1024 / len(checkouts)
        for checkout in checkouts:
            checkout.__exit__(None, None, None)
    return figures


NATIVE_KERNEL = "import sys\nfor line in sys.stdin:\n    exec(line)\n    sys.stdout.write('.\\n')\n    sys.stdout.flush()\n"


def native(python):
    run = lambda: expect(subprocess.run([python, "-c", CODE], capture_output=True, text=True).stdout, "2\n")
    figures = {
        "fresh_b2b": p50(timed(run, 100)),
        "fresh_gap": p50(timed(run, 100, GAP_S)),
        "fresh_per_s": rate(lambda: run, 2 * os.cpu_count()),
    }

    def open_kernel():
        kernel = subprocess.Popen([python, "-c", NATIVE_KERNEL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        send(kernel, "x = 1")
        return kernel

    def send(kernel, line):
        kernel.stdin.write(line + "\n")
        kernel.stdin.flush()
        expect(kernel.stdout.readline(), ".\n")

    kernels = []
    figures["session_first"] = p50(timed(lambda: kernels.append(open_kernel()), 50))
    kernel = kernels[0]
    figures["cell_b2b"] = p50(timed(lambda: send(kernel, CELL), SESSION_RUNS))
    figures["cell_gap"] = p50(timed(lambda: send(kernel, CELL), SESSION_RUNS, GAP_S))
    for other in kernels:
        other.kill()
        other.wait()
    before = private_dirty_kib(family())
    idle = [open_kernel() for _ in range(SESSIONS_FOR_MEMORY)]
    figures["idle_session_mib"] = (private_dirty_kib(family()) - before) / 1024 / len(idle)
    for other in idle:
        other.kill()
        other.wait()
    return figures


def main():
    system = sys.argv[1]
    if "--serve" in sys.argv:
        runners = {"eryx": eryx_runners, "monty": monty_runners}.get(system)
        if runners is None:
            raise SystemExit(f"--serve takes eryx or monty, not {system!r}")
        serve(runners)
        return
    if system == "eryx":
        figures = eryx()
    elif system == "monty":
        figures = monty()
    elif system == "native":
        python = sys.argv[sys.argv.index("--baseline-python") + 1] if "--baseline-python" in sys.argv else sys.executable
        figures = native(python)
    else:
        raise SystemExit(f"unknown system {system!r}: eryx, monty or native")
    print(json.dumps({"system": system, **figures}))


if __name__ == "__main__":
    main()
