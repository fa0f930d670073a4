"""SoulBox's HTTP for WebAssembly guests: `http.client` connections made by the host.

A guest has no sockets and no `ssl`. This module replaces `http.client.HTTPConnection` (and
adds `HTTPSConnection`, and `urllib.request.HTTPSHandler`) with a connection that sends each
request to the host through the door, as one request frame (tag byte 0x01, then JSON), and
reads the host's JSON answer back. The host checks it against the execution's network policy
and makes it (runtimes-wasm/src/egress). `urllib.request.urlopen` therefore works for http and
https, redirects included (urllib follows them, each hop one request), as does code written
against `http.client`. A refusal or failure raises an `OSError` subclass, as a socket would:
`PermissionError` (refused by the policy, or no network), `TimeoutError`, `ConnectionError`.

`requests` (installed as a package: it is not in the interpreter) gets the same: when
`requests.adapters` is first imported, its `HTTPAdapter.send` is replaced by one that makes the
request through the host, so sessions, redirects (followed by requests), cookies, `json()`,
`raise_for_status()` and timeouts work, over http and https; failures raise requests' own
`ConnectionError`/`Timeout`. Bodies sent `gzip` or `deflate` (requests asks for them) are
decoded, as urllib3 would.

`httpx` (a package too) gets the same when `httpx._transports.default` is first imported: its
`HTTPTransport` and `AsyncHTTPTransport` make each request through the host instead of opening
an `httpcore` pool (which needs `ssl` and sockets), so `httpx.get`, `Client` and `AsyncClient`
work, redirects followed by httpx when asked; failures raise httpx's `ConnectError`/
`ReadTimeout`. The host's policy sets the time limit (httpx's `timeout` is not passed on), an
async request blocks the guest's event loop while the host makes it, and a `proxy`, `uds` or
`http2` transport option is refused.

`asyncio`'s event loop needs a socket pair to be woken from other threads and signal handlers,
which WASI cannot make (`socket.socketpair` fails with ENOTSUP, so `asyncio.run` would fail).
When `asyncio.selector_events` is first imported, a loop that cannot make the pair goes
without it: a guest has one thread and no signals, so nothing would use it.
"""

import base64
import http.client
import importlib.abc
import importlib.machinery
import io
import json
import sys
import urllib.request
import zlib

import _host

REQUEST_FRAME = b"\x01"


class _Answer:
    """What `HTTPResponse` reads from: the host's response, as bytes on the wire."""

    def __init__(self, raw):
        self._raw = raw

    def makefile(self, mode="rb", *args, **kwargs):
        return io.BytesIO(self._raw)

    def close(self):
        pass


def _exchange(method, url, headers, body):
    frame = {"method": method, "url": url, "headers": headers, "body": body, "follow_redirects": False}
    try:
        answer = _host.call(REQUEST_FRAME + json.dumps(frame).encode())
    except ConnectionRefusedError:
        raise PermissionError("network access is not enabled for this execution (ask for a `network` policy)") from None
    answer = json.loads(answer)
    error = answer.get("error")
    if error == "refused":
        raise PermissionError(answer["message"])
    if error == "timeout":
        raise TimeoutError(answer["message"])
    if error == "limit":
        raise ConnectionAbortedError(answer["message"])
    if error:
        raise ConnectionError(answer["message"])
    return answer


def _wire(answer):
    """The answer as an HTTP/1.1 response with a Content-Length, for `HTTPResponse` to parse."""
    body = base64.b64decode(answer["body"])
    lines = [f"HTTP/1.1 {answer['status']} {answer['reason'] or 'Unknown'}"]
    for name, value in answer["headers"]:
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head + body


class HTTPConnection(http.client.HTTPConnection):
    """An `http.client.HTTPConnection` whose requests the host makes (see the module's doc)."""

    _scheme = "http"

    def __init__(self, host, port=None, timeout=None, source_address=None, blocksize=8192, **kwargs):
        super().__init__(host, port, blocksize=blocksize)
        self._soulbox = None
        self._answer = None

    def set_tunnel(self, host, port=None, headers=None):
        raise OSError("proxies are not supported: the host makes the request under the network policy")

    def connect(self):
        pass  # the host connects, for each request

    def putrequest(self, method, url, skip_host=False, skip_accept_encoding=False):
        if self._soulbox is not None:
            raise http.client.CannotSendRequest("a request is already being sent")
        if url.startswith(("http://", "https://")):
            full = url
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            default = 443 if self._scheme == "https" else 80
            netloc = host if self.port == default else f"{host}:{self.port}"
            full = f"{self._scheme}://{netloc}{url if url.startswith('/') else '/' + url}"
        self._soulbox = {"method": method, "url": full, "headers": [], "body": bytearray()}
        self._method = method

    def putheader(self, header, *values):
        if self._soulbox is None:
            raise http.client.CannotSendHeader()
        name = header.decode("latin-1") if isinstance(header, bytes) else str(header)
        text = []
        for value in values:
            text.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
        self._soulbox["headers"].append([name, ", ".join(text)])

    def endheaders(self, message_body=None, *, encode_chunked=False):
        if self._soulbox is None:
            raise http.client.CannotSendHeader()
        if message_body is not None:
            self.send(message_body)
        # The request goes now (so urllib reports a refusal as a URLError, as it does a socket
        # error), unless a declared body is still to come through send().
        declared = [v for k, v in self._soulbox["headers"] if k.lower() == "content-length"]
        if message_body is not None or not declared or declared[-1].strip() in ("", "0"):
            self._exchange()

    def _exchange(self):
        request, self._soulbox = self._soulbox, None
        body = base64.b64encode(bytes(request["body"])).decode() if request["body"] else None
        self._answer = _exchange(request["method"], request["url"], request["headers"], body)

    def send(self, data):
        if self._soulbox is None:
            raise http.client.CannotSendRequest("send() before putrequest()")
        if hasattr(data, "read"):
            while chunk := data.read(self.blocksize):
                self.send(chunk)
            return
        if isinstance(data, str):
            data = data.encode("iso-8859-1")
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._soulbox["body"] += data
            return
        for chunk in data:
            self.send(chunk)

    def getresponse(self):
        if self._soulbox is not None:
            self._exchange()
        answer, self._answer = self._answer, None
        if answer is None:
            raise http.client.ResponseNotReady("no request was sent")
        response = self.response_class(_Answer(_wire(answer)), method=self._method)
        response.begin()
        return response

    def close(self):
        self._soulbox = None
        self._answer = None


class HTTPSConnection(HTTPConnection):
    """HTTPS, with the host's TLS (the system's root certificates)."""

    default_port = http.client.HTTPS_PORT
    _scheme = "https"

    def __init__(self, host, port=None, *args, context=None, **kwargs):
        super().__init__(host, port, **kwargs)


class HTTPSHandler(urllib.request.AbstractHTTPHandler):
    """urllib's https handler over the host's connection (CPython defines one only with ssl)."""

    def __init__(self, debuglevel=None, context=None, check_hostname=None):
        super().__init__(debuglevel if debuglevel is not None else 0)

    def https_open(self, req):
        return self.do_open(HTTPSConnection, req)

    https_request = urllib.request.AbstractHTTPHandler.do_request_


def _requests_send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
    """`requests.adapters.HTTPAdapter.send`, through the host."""
    from requests import exceptions
    from requests.cookies import extract_cookies_to_jar
    from requests.models import Response
    from requests.structures import CaseInsensitiveDict
    from requests.utils import get_encoding_from_headers

    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    elif body is not None and not isinstance(body, (bytes, bytearray, str)):
        body = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    encoded = base64.b64encode(bytes(body)).decode() if body else None
    headers = [[k, v if isinstance(v, str) else v.decode("latin-1")] for k, v in request.headers.items()]
    try:
        answer = _exchange(request.method, request.url, headers, encoded)
    except TimeoutError as e:
        raise exceptions.ReadTimeout(e, request=request) from None
    except OSError as e:
        raise exceptions.ConnectionError(e, request=request) from None
    response = Response()
    response.status_code = answer["status"]
    response.reason = answer["reason"]
    merged = {}
    for name, value in answer["headers"]:
        merged[name] = f"{merged[name]}, {value}" if name in merged and name.lower() != "set-cookie" else value
    response.headers = CaseInsensitiveDict(merged)
    response.encoding = get_encoding_from_headers(response.headers)
    content = _decoded(base64.b64decode(answer["body"]), response.headers.get("content-encoding", ""))
    response._content = content
    response._content_consumed = True
    response.raw = io.BytesIO(content)
    response.url = answer["url"]
    response.request = request
    response.connection = self
    head = "".join(f"{name}: {value}\r\n" for name, value in answer["headers"]) + "\r\n"
    message = http.client.parse_headers(io.BytesIO(head.encode("latin-1", "replace")))
    extract_cookies_to_jar(response.cookies, request, _Raw(message))
    return response


def _decoded(body, encoding):
    """`body` decoded from its `Content-Encoding` when it is gzip or deflate (else as it is)."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error as e:
        raise ConnectionError(f"the response's {encoding} body could not be decoded: {e}") from None
    return body


def _httpx_refuse_options(proxy=None, uds=None, http2=False, **_):
    if proxy is not None or uds is not None:
        raise ValueError("httpx's proxy and uds options are not supported: the host makes the request under the network policy")
    if http2:
        raise ValueError("httpx's http2 option is not supported: the host chooses the HTTP version")


def _httpx_exchange(request):
    """One `httpx.Request` (its body already read) through the host, as an `httpx.Response`."""
    import httpx

    headers = [[k, v] for k, v in request.headers.multi_items()]
    body = base64.b64encode(request.content).decode() if request.content else None
    try:
        answer = _exchange(request.method, str(request.url), headers, body)
    except TimeoutError as e:
        raise httpx.ReadTimeout(str(e), request=request) from None
    except OSError as e:
        raise httpx.ConnectError(str(e), request=request) from None
    extensions = {"http_version": b"HTTP/1.1", "reason_phrase": (answer["reason"] or "").encode("latin-1", "replace")}
    return httpx.Response(
        answer["status"],
        headers=[(name, value) for name, value in answer["headers"]],
        stream=httpx.ByteStream(base64.b64decode(answer["body"])),
        request=request,
        extensions=extensions,
    )


def _patch_httpx(module):
    """`httpx._transports.default`: both transports through the host."""

    def init(self, verify=True, cert=None, trust_env=True, http1=True, http2=False, limits=None, **options):
        _httpx_refuse_options(http2=http2, **options)

    def handle_request(self, request):
        request.read()
        return _httpx_exchange(request)

    async def handle_async_request(self, request):
        await request.aread()
        return _httpx_exchange(request)

    async def aclose(self):
        pass

    async def aenter(self):
        return self

    async def aexit(self, *exc):
        pass

    sync, asynchronous = module.HTTPTransport, module.AsyncHTTPTransport
    sync.__init__, sync.handle_request = init, handle_request
    sync.__enter__, sync.__exit__, sync.close = lambda self: self, lambda self, *exc: None, lambda self: None
    asynchronous.__init__, asynchronous.handle_async_request = init, handle_async_request
    asynchronous.__aenter__, asynchronous.__aexit__, asynchronous.aclose = aenter, aexit, aclose


def _patch_asyncio(module):
    """`asyncio.selector_events`: loops without the self-pipe where WASI has no socket pair."""
    loop = module.BaseSelectorEventLoop
    make, close = loop._make_self_pipe, loop._close_self_pipe

    def make_self_pipe(self):
        try:
            make(self)
        except OSError:
            self._ssock = self._csock = None

    def close_self_pipe(self):
        if self._ssock is not None:
            close(self)

    loop._make_self_pipe, loop._close_self_pipe = make_self_pipe, close_self_pipe


class _Raw:
    """What requests' cookie extraction reads of a urllib3 response: the parsed headers."""

    def __init__(self, message):
        self._original_response = type("Original", (), {"msg": message})()


# Modules patched as they are first imported, by name.
_PATCHES = {
    "requests.adapters": lambda module: setattr(module.HTTPAdapter, "send", _requests_send),
    "httpx._transports.default": _patch_httpx,
    "asyncio.selector_events": _patch_asyncio,
}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, patch):
        self._loader, self._patch = loader, patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds the modules in `_PATCHES` as the path finder does, and patches them once loaded."""

    def find_spec(self, name, path, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


def install():
    http.client.HTTPConnection = HTTPConnection
    http.client.HTTPSConnection = HTTPSConnection
    urllib.request.HTTPSHandler = HTTPSHandler
    urllib.request._opener = None
    sys.meta_path.insert(0, _PatchOnImport())
