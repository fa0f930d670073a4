"""Drives SoulBox's MCP endpoint with the official MCP Python SDK, as an agent would.

Usage: mcp_client.py URL API_KEY

Lists the tools, runs code once, keeps state in a sandbox across cells, round-trips a file,
gets a figure back as an image, sees a tool failure as an error result, and checks that a
call without the key is refused. Exits non-zero (with a traceback) on any mismatch.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

URL, KEY = sys.argv[1], sys.argv[2]


def payload(result):
    """The JSON a tool returned (its first content block)."""
    return json.loads(result.content[0].text)


async def session_calls(session: ClientSession) -> None:
    init = await session.initialize()
    assert init.server_info.name == "soulbox", init.server_info
    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    expected = {"run_code", "create_sandbox", "run_cell", "run_command", "list_sandboxes", "kill_sandbox",
                "pause_sandbox", "resume_sandbox", "fork_sandbox", "save_template", "write_file", "read_file",
                "list_files"}
    assert expected <= set(tools), sorted(tools)
    assert tools["run_code"].input_schema["type"] == "object"
    assert "code" in tools["run_code"].input_schema["required"]

    once = await session.call_tool("run_code", {"language": "python", "code": "print(sum(range(10)))"})
    assert not once.is_error and payload(once)["stdout"] == "45\n", once
    js = await session.call_tool("run_code", {"language": "javascript", "code": "console.log([1,2].map(x => x * 2))"})
    assert payload(js)["stdout"].strip() == "[ 2, 4 ]", js  # formatted as Node formats it

    created = payload(await session.call_tool("create_sandbox", {"template": "data-science"}))
    sandbox = created["sandbox_id"]
    await session.call_tool("run_cell", {"sandbox_id": sandbox, "code": "x = 20"})
    cell = await session.call_tool("run_cell", {"sandbox_id": sandbox, "code": "x * 2 + 2"})
    assert payload(cell)["results"][0]["text"] == "42", cell

    written = await session.call_tool("write_file", {"sandbox_id": sandbox, "path": "/data/in.csv", "content": "a,b\n1,2\n"})
    assert not written.is_error, written
    summed = await session.call_tool("run_cell", {"sandbox_id": sandbox, "code": "int(pd.read_csv('/data/in.csv').sum().sum())"})
    assert payload(summed)["results"][0]["text"] == "3", summed
    counted = payload(await session.call_tool("run_command", {"sandbox_id": sandbox, "command": "wc -l < data/in.csv"}))
    assert counted["stdout"] == "2\n" and counted["exit_code"] == 0, counted
    go = payload(await session.call_tool("run_code", {"language": "go", "code": "package main\nfunc main() { println(7) }"}))
    assert go["stderr"] == "7\n", go
    listed = payload(await session.call_tool("list_files", {"sandbox_id": sandbox, "path": "/data"}))
    assert [e["name"] for e in listed["entries"]] == ["in.csv"], listed
    read = payload(await session.call_tool("read_file", {"sandbox_id": sandbox, "path": "/data/in.csv"}))
    assert read["content"] == "a,b\n1,2\n", read

    plot = await session.call_tool("run_cell", {"sandbox_id": sandbox, "code": "plt.plot([3, 1, 2])\nplt.show()"})
    images = [block for block in plot.content if block.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png", plot.content

    failed = await session.call_tool("run_cell", {"sandbox_id": "sbx-nope", "code": "1"})
    assert failed.is_error and payload(failed)["error"] == "not_found", failed
    raised = payload(await session.call_tool("run_cell", {"sandbox_id": sandbox, "code": "1/0"}))
    assert raised["error"]["name"] == "ZeroDivisionError", raised

    paused = payload(await session.call_tool("pause_sandbox", {"sandbox_id": sandbox}))
    assert paused["contexts"] == 1 and paused["stored_bytes"] > 0, paused
    assert payload(await session.call_tool("list_sandboxes", {}))["sandboxes"][0]["state"] == "paused"
    back = payload(await session.call_tool("run_cell", {"sandbox_id": sandbox, "code": "x + 1"}))
    assert back["results"][0]["text"] == "21", back
    await session.call_tool("pause_sandbox", {"sandbox_id": sandbox})
    resumed = payload(await session.call_tool("resume_sandbox", {"sandbox_id": sandbox}))
    assert resumed["state"] == "running", resumed

    forked = payload(await session.call_tool("fork_sandbox", {"sandbox_id": sandbox, "count": 2}))
    assert len(forked["sandbox_ids"]) == 2, forked
    for fork in forked["sandbox_ids"]:
        seen = payload(await session.call_tool("run_cell", {"sandbox_id": fork, "code": "x + int(pd.read_csv('/data/in.csv').sum().sum())"}))
        assert seen["results"][0]["text"] == "23", seen
        await session.call_tool("kill_sandbox", {"sandbox_id": fork})

    saved = payload(await session.call_tool("save_template", {"sandbox_id": sandbox, "name": "prepared"}))
    assert saved["template"] == "prepared" and saved["version"] == 1, saved
    started = payload(await session.call_tool("create_sandbox", {"from_template": "prepared"}))
    seen = payload(await session.call_tool("run_cell", {"sandbox_id": started["sandbox_id"], "code": "x + 2"}))
    assert seen["results"][0]["text"] == "22", seen
    await session.call_tool("kill_sandbox", {"sandbox_id": started["sandbox_id"]})
    unknown = await session.call_tool("create_sandbox", {"from_template": "never-saved"})
    assert unknown.is_error and payload(unknown)["error"] == "not_found", unknown

    mine = payload(await session.call_tool("list_sandboxes", {}))
    assert [s["sandbox_id"] for s in mine["sandboxes"]] == [sandbox], mine
    killed = await session.call_tool("kill_sandbox", {"sandbox_id": sandbox})
    assert not killed.is_error, killed
    assert payload(await session.call_tool("list_sandboxes", {}))["sandboxes"] == []


async def refused_without_key() -> None:
    try:
        async with create_mcp_http_client() as http:
            async with streamable_http_client(URL, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await asyncio.wait_for(session.initialize(), 10)
    except BaseException:  # noqa: BLE001 - the SDK wraps the 401 in an exception group
        return
    raise AssertionError("a session without an API key was accepted")


async def main() -> None:
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {KEY}"}) as http:
        async with streamable_http_client(URL, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session_calls(session)
    await refused_without_key()
    print("mcp client: all checks passed")


if __name__ == "__main__":
    asyncio.run(main())
