#!/usr/bin/env python3
"""Typical LLM-written snippets, run as fresh executions and session cells of one sandbox over
one kept-alive connection, for SECONDS: `workload.py PORT SECONDS`. Every third round leaves
5 ms between requests, so the code a server runs to wake up after an idle gap is sampled too."""
import json, socket, sys, time
port = int(sys.argv[1]); seconds = float(sys.argv[2])
SNIPPETS = [
    "print(1+1)",
    "x = x + 1",
    "x",
    "import math\nprint(math.sqrt(2) * 10)",
    "def f(n):\n    return n * 2\nprint([f(i) for i in range(10)])",
    "s = 'hello world'\nprint(s.upper(), len(s), s.split())",
    "d = {'a': 1, 'b': 2}\nfor k, v in d.items():\n    print(f'{k}={v}')",
    "import json\nprint(json.dumps({'x': [1, 2, 3], 'y': None}))",
    "total = sum(range(100))\ntotal",
    "class P:\n    def __init__(self, a):\n        self.a = a\n    def __repr__(self):\n        return f'P({self.a})'\nP(3)",
    "try:\n    1/0\nexcept ZeroDivisionError as e:\n    print('error:', e)",
    "import re\nprint(re.findall(r'\\d+', 'a1b22c333'))",
    "import datetime\nprint(datetime.date(2024, 1, 2).isoformat())",
    "nums = [3, 1, 2]\nnums.sort()\nprint(nums, max(nums), min(nums))",
    "from collections import Counter\nCounter('abracadabra').most_common(2)",
    "result = {i: i**2 for i in range(5)}\nresult",
    "import random\nrandom.seed(1)\nprint(random.randint(1, 10))",
    "print('%.2f' % 3.14159)",
    "y = [x for x in range(20) if x % 3 == 0]\nlen(y)",
    "import statistics\nstatistics.mean([1, 2, 3, 4])",
    "raise ValueError('bad input')",
    "undefined_name",
]
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")
def req(method, path, body=b""):
    s.sendall(f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    status = f.readline(); n = 0
    while True:
        l = f.readline()
        if l in (b"\r\n", b""): break
        if l.lower().startswith(b"content-length"): n = int(l.split(b":")[1])
    return status, f.read(n)
sid = json.loads(req("POST", "/v1/sandboxes", b"{}")[1])["id"]
req("POST", f"/v1/sandboxes/{sid}/execute", b'{"code":"x = 1"}')
bodies = [json.dumps({"code": c}).encode() for c in SNIPPETS]
fresh = [json.dumps({"language": "python", "code": c}).encode() for c in SNIPPETS]
end = time.time() + seconds; n = 0; rounds = 0
while time.time() < end:
    rounds += 1
    for b, fb in zip(bodies, fresh):
        if rounds % 3 == 0:
            time.sleep(0.005)
        req("POST", f"/v1/sandboxes/{sid}/execute", b)
        st, ans = req("POST", "/v1/execute", fb)
        assert b"200" in st, (st, ans)
        n += 2
req("DELETE", f"/v1/sandboxes/{sid}")
print("requests", n)
