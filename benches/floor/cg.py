"""Instructions per proxied HTTP request, under callgrind: N keep-alive absolute-form GETs with
Proxy-Authorization, through one client connection, to a loopback origin answering 13 bytes.
Adapted from the issue-20 method (cg.py): starts either egressd (`run --policy ...`, audit on)
or the floor example (benches/floor/floor.rs; it ignores the policy arguments).
Run inside a fresh network namespace (per.sh does). Bounded: N requests, timeouts.

usage: cg.py BINARY N OUT [EXTRA_ARG...]   (extra arguments go to BINARY, e.g. --timer)"""
import base64, json, os, socket, subprocess, sys, tempfile, threading, time
binary, n, out, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
BODY = b"hello, world\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
origin = socket.socket(); origin.bind(("127.0.0.1", 0)); origin.listen(16)
port = origin.getsockname()[1]
def serve(conn):
    buf = b""
    while True:
        d = conn.recv(65536)
        if not d: return
        buf += d
        while b"\r\n\r\n" in buf:
            _, buf = buf.split(b"\r\n\r\n", 1)
            conn.sendall(RESP)
def accept():
    while True:
        c, _ = origin.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
d = tempfile.mkdtemp()
policy = f'version = 1\n[defaults]\naction = "deny"\n[[allow]]\ncidr = "127.0.0.1/32"\nports = [{port}]\n[[allow]]\nhost = "*.allowed.test"\n[[danger_carve_out]]\ncidr = "127.0.0.1/32"\nports = [{port}]\n[dns]\nupstreams = ["127.0.0.1:9"]\n'
open(f"{d}/policy.toml", "w").write(policy)
cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "run", "--policy", f"{d}/policy.toml",
       "--sandbox-id", "bench", "--max-connections", "20000", "--audit-log", f"{d}/audit.jsonl"] + extra
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
ready = json.loads(p.stdout.readline())
host, pport = ready["proxy"].rsplit(":", 1)
userinfo = ready["proxy_url"].removeprefix("http://").split("@")[0]
auth = "Proxy-Authorization: Basic " + base64.b64encode(userinfo.encode()).decode() + "\r\n"
req = f"GET http://127.0.0.1:{port}/bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode()
c = socket.create_connection((host, int(pport)), timeout=30); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t = time.time(); ok = 0
for i in range(n):
    c.sendall(req); got = b""
    while not got.endswith(BODY):
        x = c.recv(65536)
        if not x: raise SystemExit("closed")
        got += x
    if b" 200 " in got[:13]: ok += 1
c.close(); time.sleep(0.5)
p.terminate(); p.wait(timeout=60)
audit = f"{d}/audit.jsonl"
lines = sum(1 for _ in open(audit)) if os.path.exists(audit) else "none (floor)"
print(f"{binary} {' '.join(extra)}: {ok}/{n} ok in {time.time()-t:.1f}s, audit lines {lines}")
if ok != n: raise SystemExit(f"only {ok}/{n} answered 200")
