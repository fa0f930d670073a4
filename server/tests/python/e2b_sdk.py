"""The official, unmodified E2B SDKs against SoulBox, as an E2B user's code runs.

Usage: e2b_sdk.py BASE_URL API_KEY OTHER_TENANTS_KEY

Sets only the three variables a user sets (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY); nothing
in the SDK is patched. Prints "all checks passed" at the end; any failed check raises.
"""

import asyncio
import io
import os
import sys

base, key, other_key = sys.argv[1], sys.argv[2], sys.argv[3]
os.environ.update(E2B_API_URL=base, E2B_SANDBOX_URL=base, E2B_API_KEY=key)

from e2b import AsyncSandbox as AsyncBase  # noqa: E402
from e2b import AuthenticationException, CommandExitException, NotFoundException, SandboxException  # noqa: E402
from e2b import FileType, SandboxQuery  # noqa: E402
from e2b_code_interpreter import AsyncSandbox, Sandbox  # noqa: E402


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def code_interpreter(sbx):
    first = sbx.run_code("x = 41\nprint('out')\nx + 1")
    check(first.text == "42" and first.logs.stdout == ["out\n"], f"a cell's value and stdout: {first}")
    check(first.execution_count == 1, f"the first cell is execution 1: {first.execution_count}")
    check(sbx.run_code("x").text == "41", "state across cells")
    check(sbx.run_code("'abc'").text == "abc", "a string's text has no quotes")
    error = sbx.run_code("1/0").error
    check(error.name == "ZeroDivisionError" and "division by zero" in error.value, f"an exception: {error}")
    check("ZeroDivisionError" in error.traceback, "its traceback")
    check(sbx.run_code("import os; os.environ['GREETING']").text == "hello", "the sandbox's envs in code")
    check(sbx.run_code("import os; os.getcwd()").text == "/home/user", "code works in /home/user")

    frame = sbx.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})").results[0]
    check(frame.data == {"a": [1, 2], "b": [3, 4]}, f"a DataFrame's data, by column: {frame.data}")
    check("<table" in frame.html, "a DataFrame's html")

    chart = sbx.run_code(
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')\nplt.show()"
    ).results[0]
    check(chart.png and chart.chart is not None, f"a figure's PNG and chart: {chart.formats()}")
    check(chart.chart.title == "squares" and chart.chart.type.value == "line", f"the chart's data: {chart.chart}")

    seen_out, seen_results = [], []
    sbx.run_code(
        "print('one')\nprint('two')\n7",
        on_stdout=lambda message: seen_out.append(message.line),
        on_result=lambda result: seen_results.append(result.text),
    )
    check("".join(seen_out) == "one\ntwo\n" and seen_results == ["7"], f"callbacks: {seen_out} {seen_results}")
    check(sbx.run_code("[1, 2].map(n => n * 21)[1]", language="javascript").text == "42", "a JavaScript cell")
    typed = sbx.run_code("const n: number = 21; [1, 2].map((v: number): number => v * n)[1]", language="typescript")
    check(typed.text == "42", f"a TypeScript cell: {typed}")

    context = sbx.create_code_context()
    check(context.cwd == "/home/user" and context.language == "python", f"a context: {context}")
    sbx.run_code("y = 5", context=context)
    check(sbx.run_code("y", context=context).text == "5", "a context keeps its own state")
    check(sbx.run_code("'y' in dir()").text == "False", "apart from the default context's")
    check(context.id in [c.id for c in sbx.list_code_contexts()], "contexts are listed")
    sbx.restart_code_context(context)
    check(sbx.run_code("'y' in dir()", context=context).text == "False", "a restart forgets")
    sbx.remove_code_context(context)
    try:
        sbx.run_code("1", context=context)
        raise AssertionError("a removed context still runs")
    except NotFoundException:
        pass


def files(sbx):
    info = sbx.files.write("/home/user/notes/a.txt", "text in a file")
    check(info.path == "/home/user/notes/a.txt", f"write answers the path: {info}")
    check(sbx.files.read("notes/a.txt") == "text in a file", "relative paths are under /home/user")
    sbx.files.write("data.bin", b"\x00\x01\xff")
    check(bytes(sbx.files.read("data.bin", format="bytes")) == b"\x00\x01\xff", "bytes round-trip")
    check(sbx.files.exists("data.bin") and not sbx.files.exists("missing.txt"), "exists")
    check(sbx.files.make_dir("made/deep") and not sbx.files.make_dir("made/deep"), "make_dir, then it exists")
    names = {entry.name: entry.type for entry in sbx.files.list("/home/user")}
    check(names.get("notes") == FileType.DIR and names.get("data.bin") == FileType.FILE, f"list: {names}")
    moved = sbx.files.rename("notes/a.txt", "notes/b.txt")
    check(moved.path == "/home/user/notes/b.txt", f"rename: {moved}")
    check(sbx.run_code("open('notes/b.txt').read()").text == "text in a file", "code sees uploaded files")
    sbx.run_code("open('from_code.txt', 'w').write('written by code')")
    check(sbx.files.read("from_code.txt") == "written by code", "files see what code wrote")
    sbx.files.remove("notes")
    check(not sbx.files.exists("notes/b.txt"), "remove")
    big = "compressible " * 10_000
    sbx.files.write("big.txt", big, gzip=True)
    check(sbx.files.read("big.txt") == big, "a gzip upload is stored decompressed")
    sbx.files.write("object.txt", io.BytesIO(b"from a file object"))
    check(sbx.files.read("object.txt") == "from a file object", "a file object (octet-stream upload)")
    try:
        sbx.files.remove("/home/user/")
        raise AssertionError("the home directory was removed")
    except SandboxException:
        pass
    sbx.files.make_dir("watched")
    watcher = sbx.files.watch_dir("/home/user/watched")
    sbx.files.write("watched/new.txt", "appeared")
    seen = []
    for _ in range(150):  # until inotify's event has come through (each poll is a request, under the burst)
        seen += [(e.name, e.type.value) for e in watcher.get_new_events()]
        if ("new.txt", "create") in seen:
            break
    check(("new.txt", "create") in seen, f"a polled watcher sees a new file: {seen}")
    watcher.stop()
    try:
        sbx.files.read("missing.txt")
        raise AssertionError("reading a missing file succeeded")
    except Exception as error:  # the SDK's FileNotFoundException (a NotFoundException)
        check(type(error).__name__ in ("NotFoundException", "FileNotFoundException"), repr(error))


def commands(sbx):
    ran = sbx.commands.run("echo hi; pwd; echo $GREETING $EXTRA", envs={"EXTRA": "there"})
    check(ran.stdout == "hi\n/home/user\nhello there\n" and ran.exit_code == 0, f"a command: {ran}")
    check(sbx.commands.run("pwd", cwd="/home/user/made").stdout == "/home/user/made\n", "cwd")
    check(sbx.commands.run("cat from_code.txt").stdout == "written by code", "commands see code's files")
    sbx.commands.run("echo from a command > from_command.txt")
    check(sbx.files.read("from_command.txt") == "from a command\n", "files see commands' files")
    check(sbx.run_code("open('/home/user/from_command.txt').read().strip()").text == "from a command", "and code")
    try:
        sbx.commands.run("echo bad >&2; exit 3")
        raise AssertionError("a failing command did not raise")
    except CommandExitException as failed:
        check(failed.exit_code == 3 and failed.stderr == "bad\n", f"its exit: {failed}")
    lines = []
    sbx.commands.run("for i in 1 2 3; do echo line $i; done", on_stdout=lambda line: lines.append(line))
    check("".join(lines) == "line 1\nline 2\nline 3\n", f"streamed output: {lines}")

    waiting = sbx.commands.run("read answer; echo got $answer", background=True, stdin=True)
    sbx.commands.send_stdin(waiting.pid, "42\n")
    check(waiting.wait().stdout == "got 42\n", "stdin")
    catting = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.stream_input(catting.pid, iter([b"streamed ", "input\n"]))
    sbx.commands.close_stdin(catting.pid)
    check(catting.wait().stdout == "streamed input\n", "streamed stdin, then end of file")
    sleeper = sbx.commands.run("sleep 60", background=True)
    check(sleeper.pid in [p.pid for p in sbx.commands.list()], "a background command is listed")
    check(sbx.commands.kill(sleeper.pid), "kill")
    try:
        sleeper.wait()
        raise AssertionError("a killed command exited cleanly")
    except CommandExitException:
        pass
    check(not sbx.commands.kill(sleeper.pid), "killing it again finds nothing")


def lifecycle(sbx):
    info = sbx.get_info()
    check(info.metadata == {"suite": "e2b"} and info.template_id == "code-interpreter-v1", f"get_info: {info}")
    sbx.set_timeout(1200)
    later = sbx.get_info()
    check((later.end_at - later.started_at).total_seconds() > 1190, f"set_timeout moves the end: {later}")
    listed = Sandbox.list(query=SandboxQuery(metadata={"suite": "e2b"})).next_items()
    check([s.sandbox_id for s in listed] == [sbx.sandbox_id], f"list by metadata: {listed}")
    check(Sandbox.list(query=SandboxQuery(metadata={"suite": "other"})).next_items() == [], "a filter that matches none")
    again = Sandbox.connect(sbx.sandbox_id)
    check(again.run_code("x").text == "41", "connect reaches the same sandbox")

    check(sbx.pause(), "pause")
    check(Sandbox.list(query=SandboxQuery(metadata={"suite": "e2b"})).next_items()[0].state.value == "paused", "listed paused")
    resumed = Sandbox.connect(sbx.sandbox_id)
    check(resumed.run_code("x + 1").text == "42", "connect resumes a paused sandbox with its state")

    others = Sandbox.list(api_key=other_key).next_items()
    check(sbx.sandbox_id not in [s.sandbox_id for s in others], "another tenant does not see it")
    try:
        Sandbox.connect(sbx.sandbox_id, api_key=other_key)
        raise AssertionError("another tenant connected")
    except NotFoundException:
        pass

    sbx.kill()
    check(not sbx.is_running(), "killed")
    try:
        Sandbox.connect(sbx.sandbox_id)
        raise AssertionError("connected to a killed sandbox")
    except NotFoundException:
        pass
    check(Sandbox.kill(sbx.sandbox_id) is False, "killing it again")
    try:
        Sandbox.create(api_key="sbk_not_a_key")
        raise AssertionError("a bad key created a sandbox")
    except AuthenticationException:
        pass
    try:
        Sandbox.create(template="no-such-template")
        raise AssertionError("an unknown template made a sandbox")
    except SandboxException as error:
        check("no-such-template" in str(error), f"the unknown template is named: {error}")


async def async_api():
    sbx = await AsyncSandbox.create(timeout=60)
    created = asyncio.Event()
    await sbx.files.make_dir("streamed")
    handle = await sbx.files.watch_dir(
        "streamed", on_event=lambda e: created.set() if (e.name, e.type.value) == ("made.txt", "create") else None
    )
    await sbx.commands.run("echo x > streamed/made.txt")
    await asyncio.wait_for(created.wait(), 30)
    await handle.stop()
    execution = await sbx.run_code("sum(range(10))")
    check(execution.text == "45", f"async run_code: {execution}")
    await sbx.files.write("async.txt", "async")
    check((await sbx.commands.run("cat async.txt")).stdout == "async", "async commands and files")
    await sbx.kill()
    base = await AsyncBase.create(timeout=60)
    check((await base.commands.run("echo base")).stdout == "base\n", "the base template")
    await base.kill()


# Ten minutes: everything before lifecycle's set_timeout runs within it, on a loaded machine too.
sbx = Sandbox.create(metadata={"suite": "e2b"}, envs={"GREETING": "hello"}, timeout=600)
code_interpreter(sbx)
files(sbx)
commands(sbx)
lifecycle(sbx)
asyncio.run(async_api())
print("all checks passed", flush=True)
# The SDK's native HTTP client (pyqwest) sometimes aborts while the interpreter finalizes, after
# everything ran; leave without finalizing.
os._exit(0)
