"""The checks scripts/compose-check.sh runs through the Compose cluster's proxy.

    compose_check.py BASE KEY spread                     three sandboxes, one per node; prints {node: id}
    compose_check.py BASE KEY kept ID NODE CODE TEXT     a cell in ID (last on NODE) answers TEXT (503s waited out)
    compose_check.py BASE KEY awaited ID                 ID answers 503 "kept for the node to come back" (other 503s waited out)
    compose_check.py BASE KEY lost ID                    ID answers 410 "was lost" (200s and 503s waited out)
"""

import json
import sys
import time
import urllib.error
import urllib.request

PATIENCE_S = 120


def call(base, key, method, path, body=None, auth=True):
    headers = {"content-type": "application/json"}
    if auth:
        headers["authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("x-soulbox-node"), parsed(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("x-soulbox-node"), parsed(error.read())


def parsed(body):
    """A body as JSON, or as text when it is not (the proxy's own pages)."""
    try:
        return json.loads(body or b"null")
    except ValueError:
        return body.decode(errors="replace")


def text_of(result):
    return result["results"][0]["text"] if result and result.get("results") else None


def spread(base, key):
    sandboxes = {}
    for _ in range(3):
        status, node, made = call(base, key, "POST", "/v1/sandboxes", {})
        assert status == 201, (status, made)
        sandboxes[node] = made["id"]
    assert sorted(sandboxes) == ["soulbox-1", "soulbox-2", "soulbox-3"], f"not one per node: {sandboxes}"
    for n, (node, sandbox) in enumerate(sorted(sandboxes.items()), start=1):
        status, served, result = call(base, key, "POST", f"/v1/sandboxes/{sandbox}/execute", {"code": f"x = {n}0\nx"})
        assert (status, served, text_of(result)) == (200, node, f"{n}0"), (status, served, result)
    status, _, _ = call(base, key, "GET", "/cluster/nodes", auth=False)
    assert status == 404, f"/cluster/nodes answered {status} from outside"
    print(json.dumps(sandboxes))


def kept(base, key, sandbox, node, code, text):
    give_up = time.time() + PATIENCE_S
    waited_out = set()
    while True:
        status, served, result = call(base, key, "POST", f"/v1/sandboxes/{sandbox}/execute", {"code": code})
        if status == 200:
            # Its node, back within a lease; another node, had it taken the sandbox over.
            assert text_of(result) == text, (served, result)
            print(f"{sandbox}: {text} from {served} (was on {node})")
            return
        assert status == 503 and time.time() < give_up, (status, result)
        why = result["error"]["message"] if isinstance(result, dict) and "error" in result else "the proxy's own 503"
        if why not in waited_out:
            waited_out.add(why)
            print(f"{sandbox}: 503 from {served}, waited out: {why}", file=sys.stderr)
        time.sleep(0.5)


def awaited(base, key, sandbox):
    """Its node stopped (drained, its sandbox paused on its own disk): the node the proxy picks
    instead keeps it for that node to come back, rather than finding it lost."""
    give_up = time.time() + PATIENCE_S
    while True:
        status, served, result = call(base, key, "POST", f"/v1/sandboxes/{sandbox}/execute", {"code": "1"})
        why = result["error"]["message"] if isinstance(result, dict) and "error" in result else result
        assert status == 503 and time.time() < give_up, (status, served, result)
        if "kept for the node to come back" in why:
            print(f"{sandbox}: 503 from {served}: {why}")
            return
        time.sleep(0.2)


def lost(base, key, sandbox):
    give_up = time.time() + PATIENCE_S
    while True:
        status, _, result = call(base, key, "GET", f"/v1/sandboxes/{sandbox}")
        if status == 410:
            assert "was lost" in result["error"]["message"], result
            return
        assert status in (200, 503) and time.time() < give_up, (status, result)
        time.sleep(0.5)


if __name__ == "__main__":
    base, key, command, *args = sys.argv[1:]
    {"spread": spread, "kept": kept, "awaited": awaited, "lost": lost}[command](base, key, *args)
