//! Real peers in Python for the inspected-protocol tests: a WebSocket origin and client (the
//! `websockets` package, 15 or later, whose client reads its proxy from `HTTPS_PROXY` and trusts
//! what `SSL_CERT_FILE` names), and, in `grpc_peers`, a gRPC server and client. Each origin serves
//! TLS on loopback with a leaf from a [`TestCa`]; each client runs with nothing but the bare
//! necessities and the readiness line's `env` block. `.ci/run` installs the packages; the tests
//! using them are ignored in the plain run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use super::{PATIENCE, TestCa};

/// The WebSocket origin: echoes every message; `close-please` makes it close with 4001. It
/// appends one JSON line per connection to its log when the connection has ended: the path, the
/// headers egressd sent it, the extensions agreed and the close codes both ways.
const WS_ORIGIN: &str = r#"
import asyncio, json, ssl, sys
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

cert, key, log = sys.argv[1:4]

async def handler(ws):
    headers = ws.request.headers
    entry = {
        "path": ws.request.path,
        "authorization": headers.get("Authorization", ""),
        "sandbox": headers.get_all("X-Egressd-Sandbox"),
        "extensions": [e.name for e in ws.protocol.extensions],
    }
    try:
        async for message in ws:
            if message == "close-please":
                await ws.close(4001, "bye from the origin")
                break
            await ws.send(message)
    except ConnectionClosed:
        pass
    await ws.wait_closed()
    rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
    entry["close_received"] = rcvd.code if rcvd else None
    entry["close_sent"] = sent.code if sent else None
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")

async def main():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    async with serve(handler, "127.0.0.1", 0, ssl=context, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

/// The WebSocket client: `URL COMPRESSION CLOSER [HEADER...]`. It opens the connection through the
/// proxy its environment names (`compression` `deflate` offers permessage-deflate, `none` does
/// not), sends a text and a 1 MiB binary message and checks their echoes, then closes (`client`)
/// or asks the origin to (`origin`). Prints one JSON line of what it saw.
const WS_CLIENT: &str = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

url, compression, closer, *hs = sys.argv[1:]
headers = [tuple(h.split(": ", 1)) for h in hs]

async def main():
    out = {}
    try:
        async with connect(url, additional_headers=headers, max_size=None,
                           compression=None if compression == "none" else "deflate",
                           open_timeout=20, close_timeout=20, ping_interval=None) as ws:
            out["extensions"] = [e.name for e in ws.protocol.extensions]
            await ws.send("hello")
            out["text"] = await ws.recv()
            big = bytes(range(256)) * 4096
            await ws.send(big)
            out["binary_echoed"] = (await ws.recv()) == big
            if closer == "origin":
                await ws.send("close-please")
                try:
                    await ws.recv()
                except ConnectionClosed:
                    pass
            else:
                await ws.close(1000, "bye from the client")
            await ws.wait_closed()
            rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
            out["close_received"] = [rcvd.code, rcvd.reason] if rcvd else None
            out["close_sent"] = sent.code if sent else None
    except InvalidStatus as e:
        out["status"] = e.response.status_code
        out["reason"] = e.response.headers.get("x-egressd-reason", "")
        out["body"] = (e.response.body or b"").decode("utf-8", "replace")
    except Exception as e:
        out["error"] = repr(e)
    print(json.dumps(out))

asyncio.run(main())
"#;

/// The WebSocket origin that echoes the `Authorization` it was sent everywhere a frame can hold
/// it: a text message, a binary one, a text message in fragments that split the value (after
/// `Bearer ` and five more characters), a ping's payload and the close reason (code 4002). Its
/// log line: the path, the `Authorization` and `Sec-WebSocket-Extensions` it got, the extensions
/// agreed.
const WS_ECHO_ORIGIN: &str = r#"
import json, ssl, sys, asyncio
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

cert, key, log = sys.argv[1:4]

async def handler(ws):
    headers = ws.request.headers
    auth = headers.get("Authorization", "")
    entry = {
        "path": ws.request.path,
        "authorization": auth,
        "offered_extensions": headers.get("Sec-WebSocket-Extensions"),
        "extensions": [e.name for e in ws.protocol.extensions],
    }
    try:
        await ws.send(f"text echo: {auth}")
        await ws.send(b"\x00\xffbinary " + auth.encode())
        split = len("Bearer ") + 5
        await ws.send([f"frag: {auth[:split]}", f"{auth[split:]} end"])
        await ws.ping(auth.encode())
        await ws.close(4002, f"bye {auth}")
    except ConnectionClosed:
        pass
    await ws.wait_closed()
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")

async def main():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    async with serve(handler, "127.0.0.1", 0, ssl=context) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

/// A WebSocket origin that breaks the protocol, written by hand: it accepts every upgrade, and on
/// a path ending in `/extension` names `permessage-deflate` in its `101` though nobody offered
/// it; on one ending in `/rsv` it then sends a text frame with RSV1 set. It keeps the connection
/// until the peer closes it. Its log line, at once: the path and the `Sec-WebSocket-Extensions`
/// it got.
const WS_RAW_ORIGIN: &str = r#"
import asyncio, base64, hashlib, json, ssl, sys

cert, key, log = sys.argv[1:4]
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

async def handle(reader, writer):
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    path = head[0].split(" ")[1]
    headers = {}
    for line in head[1:]:
        if ": " in line:
            name, value = line.split(": ", 1)
            headers[name.lower()] = value
    digest = hashlib.sha1((headers.get("sec-websocket-key", "") + GUID).encode()).digest()
    response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + base64.b64encode(digest).decode() + "\r\n")
    if path.endswith("/extension"):
        response += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    writer.write((response + "\r\n").encode())
    if path.endswith("/rsv"):
        writer.write(b"\xc1\x05hello")
    await writer.drain()
    entry = {"path": path, "offered_extensions": headers.get("sec-websocket-extensions")}
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")
    try:
        await reader.read()
    except Exception:
        pass
    writer.close()

async def main():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Future()

asyncio.run(main())
"#;

/// The WebSocket client that records every frame it receives: `URL COMPRESSION [HEADER...]`.
/// It reads messages until the origin closes, and prints the extensions agreed, the messages,
/// the frames (opcode name, FIN, payload; bytes as Latin-1) and the close received.
const WS_SPY_CLIENT: &str = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect, ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame

url, compression, *hs = sys.argv[1:]
headers = [tuple(h.split(": ", 1)) for h in hs]
frames = []

class Spy(ClientConnection):
    def process_event(self, event):
        # The handshake's response comes this way too.
        if isinstance(event, Frame):
            frames.append([event.opcode.name, event.fin, bytes(event.data).decode("latin-1")])
        super().process_event(event)

async def main():
    out = {}
    try:
        async with connect(url, additional_headers=headers, create_connection=Spy,
                           compression=None if compression == "none" else "deflate",
                           open_timeout=20, close_timeout=20, ping_interval=None) as ws:
            out["extensions"] = [e.name for e in ws.protocol.extensions]
            messages = []
            try:
                async for message in ws:
                    if isinstance(message, bytes):
                        message = message.decode("latin-1")
                    messages.append(message)
            except ConnectionClosed:
                pass
            out["messages"] = messages
            rcvd = ws.protocol.close_rcvd
            out["close_received"] = [rcvd.code, rcvd.reason] if rcvd else None
    except InvalidStatus as e:
        out["status"] = e.response.status_code
        out["reason"] = e.response.headers.get("x-egressd-reason", "")
    except Exception as e:
        out["error"] = repr(e)
    out["frames"] = frames
    print(json.dumps(out))

asyncio.run(main())
"#;

/// A peer process, killed on drop.
pub struct PeerProcess {
    child: Child,
    pub port: u16,
    /// The file the peer appends its JSON lines to.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PeerProcess {
    /// Starts `python3 -c SCRIPT CERT KEY LOG` with a leaf for `names` from `ca`, and waits for the
    /// port it prints.
    pub fn start_python(script: &str, ca: &TestCa, names: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = leaf_files(ca, names, dir.path());
        let log = dir.path().join("peer.jsonl");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&cert)
            .arg(&key)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 runs (.ci/run installs it): {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("the peer printed no port ({line:?}): is its package installed?")
        });
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// The WebSocket origin for `names`.
    pub fn websocket_origin(ca: &TestCa, names: &[&str]) -> Self {
        Self::start_python(WS_ORIGIN, ca, names)
    }

    /// The WebSocket origin that echoes the credential it gets in every frame ([`WS_ECHO_ORIGIN`]).
    pub fn websocket_echo_origin(ca: &TestCa, names: &[&str]) -> Self {
        Self::start_python(WS_ECHO_ORIGIN, ca, names)
    }

    /// The WebSocket origin that breaks the protocol ([`WS_RAW_ORIGIN`]).
    pub fn websocket_raw_origin(ca: &TestCa, names: &[&str]) -> Self {
        Self::start_python(WS_RAW_ORIGIN, ca, names)
    }

    /// The first `count` JSON lines of the peer's log, waiting for them (up to [`PATIENCE`]).
    pub fn records(&self, count: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
            let records: Vec<serde_json::Value> = whole
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if records.len() >= count {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {count} peer records in:\n{text}"
            );
            // The file gives no wake-up; a short pause between reads.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Writes a leaf certificate for `names` from `ca`, and its key, as PEM files in `dir`.
pub fn leaf_files(ca: &TestCa, names: &[&str], dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = ca.leaf(names);
    let cert = super::write(dir, "leaf.pem", &pem("CERTIFICATE", cert.as_ref()));
    let key = super::write(dir, "leaf.key", &pem("PRIVATE KEY", key.secret_der()));
    (cert, key)
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// Runs a Python client script with `args` in an environment of `env` (the readiness line's
/// block) and the bare necessities; its last stdout line, as JSON.
pub fn python_client(script: &str, env: &serde_json::Value, args: &[&str]) -> serde_json::Value {
    let mut command = Command::new("python3");
    command.arg("-c").arg(script).args(args).env_clear();
    for var in ["PATH", "HOME", "PYENV_ROOT", "PYENV_VERSION"] {
        if let Some(value) = std::env::var_os(var) {
            command.env(var, value);
        }
    }
    for (name, value) in env.as_object().expect("an env block") {
        command.env(name, value.as_str().unwrap());
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("python3 runs (.ci/run installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "the client printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The WebSocket client: `url`, offering permessage-deflate or not, closed by `closer`
/// (`client` or `origin`), with `headers`.
pub fn websocket_client(
    env: &serde_json::Value,
    url: &str,
    deflate: bool,
    closer: &str,
    headers: &[&str],
) -> serde_json::Value {
    let compression = if deflate { "deflate" } else { "none" };
    let mut args = vec![url, compression, closer];
    args.extend_from_slice(headers);
    python_client(WS_CLIENT, env, &args)
}

/// The frame-recording WebSocket client ([`WS_SPY_CLIENT`]): `url`, offering
/// permessage-deflate or not, with `headers`.
pub fn websocket_spy_client(
    env: &serde_json::Value,
    url: &str,
    deflate: bool,
    headers: &[&str],
) -> serde_json::Value {
    let compression = if deflate { "deflate" } else { "none" };
    let mut args = vec![url, compression];
    args.extend_from_slice(headers);
    python_client(WS_SPY_CLIENT, env, &args)
}

/// The gRPC origin (grpcio, no `.proto`: generic handlers on raw bytes), service `test.Echo`:
/// `Unary` answers `echo:` and the request, `Chat` (bidirectional streaming) answers each message
/// likewise, `Deny` fails with `PERMISSION_DENIED`; each sets a trailer. It appends one JSON line
/// per call to its log: the method and the metadata egressd sent it.
const GRPC_ORIGIN: &str = r#"
import json, sys, threading
from concurrent import futures
import grpc

cert, key, log = sys.argv[1:4]
lock = threading.Lock()

def record(method, context):
    metadata = {}
    for k, v in context.invocation_metadata():
        metadata.setdefault(k, []).append(v)
    entry = {"method": method, "metadata": metadata}
    with lock, open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")

def unary(request, context):
    record("Unary", context)
    context.set_trailing_metadata((("x-trailer", "unary-done"),))
    return b"echo:" + request

def chat(requests, context):
    record("Chat", context)
    for r in requests:
        yield b"echo:" + r
    context.set_trailing_metadata((("x-trailer", "chat-done"),))

def deny(request, context):
    record("Deny", context)
    context.set_trailing_metadata((("x-trailer", "deny-done"),))
    context.abort(grpc.StatusCode.PERMISSION_DENIED, "the origin says no")

handler = grpc.method_handlers_generic_handler("test.Echo", {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "Chat": grpc.stream_stream_rpc_method_handler(chat),
    "Deny": grpc.unary_unary_rpc_method_handler(deny),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((handler,))
with open(key, "rb") as k, open(cert, "rb") as c:
    credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
port = server.add_secure_port("127.0.0.1:0", credentials)
server.start()
print(port, flush=True)
server.wait_for_termination()
"#;

/// The gRPC client: `TARGET [KEY=VALUE...]` (metadata). grpcio finds the proxy in `https_proxy`
/// itself; the roots it is given are the file `SSL_CERT_FILE` names (gRPC does not read that
/// variable, so the script hands it over). It calls `Unary`, `Chat` (three messages), `Deny`, and
/// a method outside the policy's paths; prints one JSON line.
const GRPC_CLIENT: &str = r#"
import json, os, sys
import grpc

target, *pairs = sys.argv[1:]
metadata = tuple(tuple(p.split("=", 1)) for p in pairs)
with open(os.environ["SSL_CERT_FILE"], "rb") as f:
    credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
out = {}
with grpc.secure_channel(target, credentials) as channel:
    def failure(e):
        return [e.code().name, e.details()]
    try:
        reply, call = channel.unary_unary("/test.Echo/Unary").with_call(
            b"hello", metadata=metadata, timeout=20)
        out["unary"] = reply.decode()
        out["unary_trailers"] = dict(call.trailing_metadata())
    except grpc.RpcError as e:
        out["unary_error"] = failure(e)
    try:
        replies = channel.stream_stream("/test.Echo/Chat")(
            iter([b"a", b"b", b"c"]), metadata=metadata, timeout=20)
        out["chat"] = [r.decode() for r in replies]
        out["chat_trailers"] = dict(replies.trailing_metadata())
    except grpc.RpcError as e:
        out["chat_error"] = failure(e)
    try:
        channel.unary_unary("/test.Echo/Deny")(b"x", metadata=metadata, timeout=20)
    except grpc.RpcError as e:
        out["deny"] = failure(e)
        out["deny_trailers"] = dict(e.trailing_metadata() or ())
    try:
        channel.unary_unary("/test.Admin/Drop")(b"x", metadata=metadata, timeout=20)
        out["admin"] = "served"
    except grpc.RpcError as e:
        out["admin"] = failure(e)
print(json.dumps(out))
"#;

impl PeerProcess {
    /// The gRPC origin for `names`.
    pub fn grpc_origin(ca: &TestCa, names: &[&str]) -> Self {
        Self::start_python(GRPC_ORIGIN, ca, names)
    }
}

/// The gRPC client against `target` (`host:port`), sending `metadata` (`key=value`) with each
/// call.
pub fn grpc_client(env: &serde_json::Value, target: &str, metadata: &[&str]) -> serde_json::Value {
    let mut args = vec![target];
    args.extend_from_slice(metadata);
    python_client(GRPC_CLIENT, env, &args)
}
