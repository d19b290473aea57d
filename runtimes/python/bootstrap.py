# fnbox python runtime: runs inside a sandbox as an unprivileged user. Loads
# the function once, says "ready", then serves calls one at a time over fd 3
# until the host closes it. Framing: u32 BE header length, u32 BE body
# length, JSON header, raw body (src/runtime/protocol.ts on the host side).
#
# Handler "main.handler": main.py in the code directory, function handler(event, context),
# plain or async. Results: str/dict/list/number -> JSON; bytes -> raw bytes; a dict with
# "statusCode" sets status, headers and body (Lambda's proxy response).
# base64 and traceback are imported where needed: with re and enum behind
# them they would add ~15 ms to every start for calls that rarely use them.
import importlib
import io
import json
import os
import socket
import struct
import sys
import time

CODE_DIR = os.environ.get("FNBOX_CODE_DIR", "/code")
# Spare mode: started before any function is known, on an empty /code. It
# reports ready at once; the host then moves it onto a root with a
# function's code and sends one "adopt" frame carrying what the FNBOX_*
# variables would have said. From there on it is that function's.
SPARE = os.environ.get("FNBOX_SPARE") == "1"
HANDLER = FUNCTION_NAME = None
MEMORY_MB = MAX_RESPONSE = MAX_LOG = 0


def configure(settings, env):
    global HANDLER, FUNCTION_NAME, MEMORY_MB, MAX_RESPONSE, MAX_LOG
    HANDLER = settings.get("FNBOX_HANDLER", "main.handler")
    FUNCTION_NAME = settings.get("FNBOX_FUNCTION", "function")
    MEMORY_MB = int(settings.get("FNBOX_MEMORY_MB", "128"))
    MAX_RESPONSE = int(settings.get("FNBOX_MAX_RESPONSE_BYTES", str(6 * 1024 * 1024)))
    MAX_LOG = int(settings.get("FNBOX_MAX_LOG_BYTES", str(64 * 1024)))
    for key in [k for k in os.environ if k.startswith("FNBOX_")]:
        del os.environ[key]
    os.environ.update(env)


channel = socket.socket(fileno=3)
PREFIX = struct.Struct(">II")


def send(header, body=b""):
    data = json.dumps(header, separators=(",", ":")).encode()
    head = PREFIX.pack(len(data), len(body)) + data
    # Small frames go out as one buffer; big bodies are not copied.
    if len(body) <= 65536:
        channel.sendall(head + body)
    else:
        channel.sendall(head)
        channel.sendall(body)


# fd 4, the gate: the sandbox's monitor writes a byte to it each time it has
# given this process a fresh root. A call may be sent while the previous
# call's root is still being swapped; its header says how many swaps must
# have been announced before it runs ("gate").
GATE_FD = 4
swaps_seen = 0


def pass_gate(swaps):
    global swaps_seen
    while swaps_seen < swaps:
        got = os.read(GATE_FD, min(64, swaps - swaps_seen))
        if not got:
            sys.exit(0)  # the monitor is gone, and the sandbox with it
        swaps_seen += len(got)


def recv_exact(n):
    chunks = []
    while n:
        chunk = channel.recv(min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class CallLog(io.TextIOBase):
    """sys.stdout/sys.stderr during a call: text goes back with the call."""

    def __init__(self, stream_name, real):
        self.stream_name = stream_name
        self.real = real
        self.call = None

    def writable(self):
        return True

    def write(self, text):
        call = self.call
        if call is None:
            return self.real.write(text)
        data = text.encode("utf-8", "replace")
        if not data:
            return 0  # print() writes "" for an empty string: no frame for nothing (the host counts frames)
        room = MAX_LOG - call["log_bytes"]
        if room > 0:
            kept = data[:room]
            call["log_bytes"] += len(kept)
            send({"k": "log", "id": call["id"], "stream": self.stream_name}, kept)
        if len(data) > max(room, 0):
            call["dropped"] += len(data) - max(room, 0)
        return len(text)

    def flush(self):
        pass


stdout_log = CallLog("stdout", sys.stdout)
stderr_log = CallLog("stderr", sys.stderr)
sys.stdout = stdout_log
sys.stderr = stderr_log


class Context:
    def __init__(self, header):
        self.invocation_id = header["id"]
        self.aws_request_id = header["id"]
        self.function_name = FUNCTION_NAME
        self.memory_limit_in_mb = MEMORY_MB
        self.deadline_ms = header["deadline"]

    def get_remaining_time_in_millis(self):
        return max(0, int(self.deadline_ms - time.time() * 1000))


def load_handler():
    module_name, _, attr = HANDLER.rpartition(".")
    if not module_name:
        raise ValueError('handler must look like "file.function", got %r' % HANDLER)
    sys.path.insert(0, CODE_DIR)
    module = importlib.import_module(module_name.replace("/", "."))
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise AttributeError("%s.py has no function %r" % (module_name, attr))
    return fn


def make_event(header, body):
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    content_type = dict(header["headers"]).get("content-type", "")
    if "json" in content_type or text.lstrip()[:1] in ('{', '[', '"') or text.strip() in ("true", "false", "null") or _is_number(text):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def make_result(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 200, [["content-type", "application/octet-stream"]], bytes(value)
    if isinstance(value, dict) and "statusCode" in value:
        headers = [[str(k).lower(), str(v)] for k, v in (value.get("headers") or {}).items()]
        body = value.get("body")
        if body is None:
            data = b""
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            if value.get("isBase64Encoded"):
                import base64
                data = base64.b64decode(body)
            else:
                data = body.encode()
        else:
            data = json.dumps(body).encode()
            if not any(k == "content-type" for k, _ in headers):
                headers.append(["content-type", "application/json"])
        if not any(k == "content-type" for k, _ in headers):
            headers.append(["content-type", "text/plain; charset=utf-8"])
        return int(value["statusCode"]), headers, data
    return 200, [["content-type", "application/json"]], json.dumps(value).encode()


def handle(fn, header, body):
    """Runs one call; its answer is sent once the cwd is back in "/"."""
    reply = run_call(fn, header, body)
    # Between calls the process waits in "/", which a root reset carries over
    # to the new root: nothing pins the previous call's layer.
    os.chdir("/")
    send(*reply)


def run_call(fn, header, body):
    """The call in /code of the root it was given; returns the final frame."""
    call = {"id": header["id"], "log_bytes": 0, "dropped": 0}
    stdout_log.call = stderr_log.call = call
    try:
        os.chdir(CODE_DIR)
        value = fn(make_event(header, body), Context(header))
        if hasattr(value, "__await__"):
            import asyncio  # only async handlers pay for asyncio

            value = asyncio.run(_await(value))
        status, headers, data = make_result(value)
    except BaseException as error:  # the function's failure, whatever it is
        stdout_log.call = stderr_log.call = None
        if isinstance(error, SystemExit):
            raise
        if call["dropped"]:
            send({"k": "log", "id": call["id"], "stream": "stderr", "truncated": call["dropped"]})
        return ({"k": "error", "id": header["id"], "type": "Unhandled", "name": type(error).__name__,
                 "message": str(error), "stack": current_stack()},)
    stdout_log.call = stderr_log.call = None
    if call["dropped"]:
        send({"k": "log", "id": call["id"], "stream": "stderr", "truncated": call["dropped"]})
    if len(data) > MAX_RESPONSE:
        return ({"k": "error", "id": header["id"], "type": "Unhandled", "name": "ResponseTooLarge",
                 "message": "the response body of %d bytes exceeds the limit of %d" % (len(data), MAX_RESPONSE)},)
    return ({"k": "result", "id": header["id"], "status": status, "headers": headers}, data)


async def _await(value):
    return await value


def current_stack():
    """The traceback of the exception being handled, as text."""
    import traceback
    return traceback.format_exc()


def read_frame():
    """The next (header, body) from the host, or None once it closed the channel."""
    prefix = recv_exact(8)
    if prefix is None:
        return None
    header_length, body_length = PREFIX.unpack(prefix)
    header = json.loads(recv_exact(header_length))
    body = recv_exact(body_length) if body_length else b""
    return header, body


def fail_init(message, stack=None):
    send({"k": "init_error", "message": message, "stack": stack})
    sys.exit(1)


def main():
    version = sys.version.split()[0]
    if SPARE:
        os.chdir("/")  # nothing of the boot layer stays pinned past the adoption
        send({"k": "ready", "runtime": "python", "version": version, "spare": True})
        frame = read_frame()
        if frame is None:
            return
        if frame[0].get("k") != "adopt":
            fail_init('a spare runtime expects "adopt" first, not "%s"' % frame[0].get("k"))
        configure(frame[0]["settings"], frame[0]["env"])
    else:
        configure(dict(os.environ), {})
    try:
        os.chdir(CODE_DIR)
        fn = load_handler()
    except BaseException as error:
        fail_init("%s: %s" % (type(error).__name__, error), current_stack())
    os.chdir("/")
    send({"k": "ready", "runtime": "python", "version": version})
    while True:
        frame = read_frame()
        if frame is None:
            return  # the host closed the channel: stop
        if frame[0].get("gate", 0) > swaps_seen:
            pass_gate(frame[0]["gate"])
        handle(fn, *frame)


main()
