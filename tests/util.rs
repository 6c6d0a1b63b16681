//! Helpers shared by the integration tests: the real binary, loopback origins, a recording DNS
//! server, curl, and network namespaces. Nothing here sends a packet beyond loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits on; reached only when something is broken.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The `egressd` binary cargo built for these tests.
pub fn egressd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_egressd"))
}

/// A path inside the repository.
pub fn repo(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The result of one finished run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `egressd ARGS...` to completion.
pub fn run(args: &[&str]) -> Run {
    let out = egressd()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("egressd runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Text that grows as a child writes it, with waiting for a line to appear.
#[derive(Clone, Default)]
pub struct Captured(Arc<(Mutex<String>, Condvar)>);

impl Captured {
    fn follow(reader: impl Read + Send + 'static) -> Self {
        let captured = Self::default();
        let sink = captured.clone();
        thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                let (text, changed) = &*sink.0;
                let mut text = text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                changed.notify_all();
            }
        });
        captured
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits until `needle` has appeared `count` times in all; panics after [`PATIENCE`].
    pub fn wait_for(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        let (text, changed) = &*self.0;
        let mut guard = text.lock().unwrap();
        while guard.matches(needle).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "gave up waiting for {needle:?} x{count} in:\n{guard}"
            );
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
    }
}

/// A running `egressd run`, killed on drop (its stderr is printed if the test failed).
pub struct Sidecar {
    child: Option<Child>,
    pub ready: serde_json::Value,
    pub stderr: Captured,
    pub stdout: Captured,
    stdin: Option<std::process::ChildStdin>,
}

impl Sidecar {
    /// Starts `egressd run ARGS...` and waits for its readiness line.
    pub fn start(args: &[&str]) -> Self {
        match Self::try_start(args) {
            Ok(sidecar) => sidecar,
            Err(run) => panic!("egressd run did not become ready: {run:?}"),
        }
    }

    /// Starts `egressd run ARGS...`; `Err` with its output if it exits instead of becoming ready.
    pub fn try_start(args: &[&str]) -> Result<Self, Run> {
        let mut child = egressd()
            .arg("run")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("egressd starts");
        let stderr = Captured::follow(child.stderr.take().unwrap());
        let stdout = Captured::follow(child.stdout.take().unwrap());
        let stdin = child.stdin.take();
        // Wait for the first stdout line, or for the process to exit.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = stdout.text();
            if let Some(line) = text.lines().next() {
                let ready = serde_json::from_str(line).expect("the readiness line is JSON");
                return Ok(Self {
                    child: Some(child),
                    ready,
                    stderr,
                    stdout,
                    stdin,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                let code = status.code().unwrap_or(-1);
                // Let the reader threads drain what the process wrote.
                let (out, err) = (wait_closed(&stdout), wait_closed(&stderr));
                return Err(Run {
                    code,
                    stdout: out,
                    stderr: err,
                });
            }
            assert!(
                Instant::now() < deadline,
                "no readiness line; stderr:\n{}",
                stderr.text()
            );
            let (lock, changed) = &*stdout.0;
            let guard = lock.lock().unwrap();
            if guard.is_empty() {
                let _ = changed
                    .wait_timeout(guard, Duration::from_millis(50))
                    .unwrap();
            }
        }
    }

    /// The proxy's TCP address from the readiness line.
    pub fn proxy(&self) -> SocketAddr {
        self.ready["proxy"].as_str().unwrap().parse().unwrap()
    }

    /// `http://` URL of the proxy.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Closes egressd's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits for the process to exit, up to [`PATIENCE`].
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            (child, status)
        });
        if rx.recv_timeout(PATIENCE).is_err() {
            panic!("egressd did not exit; stderr:\n{}", self.stderr.text());
        }
        let (_, status) = waiter.join().unwrap();
        status.unwrap()
    }
}

fn wait_closed(captured: &Captured) -> String {
    // The reader thread ends at EOF, which follows process exit closely; a short bounded wait.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = captured.text();
    while Instant::now() < deadline {
        let (lock, changed) = &*captured.0;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = changed
            .wait_timeout(guard, Duration::from_millis(100))
            .unwrap();
        if timeout.timed_out() && *guard == last {
            break;
        }
        last = guard.clone();
    }
    last
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("--- egressd stderr ---\n{}", self.stderr.text());
        }
    }
}

/// What an origin does with a request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer 200 with a small body.
    Answer,
    /// Read the request and never answer.
    Silent,
}

/// A loopback HTTP/1.1 origin that records every request head it receives.
pub struct Origin {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub connections: Arc<Mutex<usize>>,
}

/// The body every answering origin sends.
pub const ORIGIN_BODY: &str = "hello from origin\n";

impl Origin {
    /// Binds 127.0.0.1:0.
    pub fn start(behaviour: Behaviour) -> Self {
        Self::bind("127.0.0.1:0".parse().unwrap(), behaviour)
    }

    /// Binds `addr` (inside a network namespace, a 10.x address).
    pub fn bind(addr: SocketAddr, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (log, count) = (requests.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                *count.lock().unwrap() += 1;
                let log = log.clone();
                thread::spawn(move || serve_origin(stream, &log, behaviour));
            }
        });
        Self {
            addr,
            requests,
            connections,
        }
    }

    /// The request heads seen so far.
    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve_origin(mut stream: TcpStream, log: &Mutex<Vec<String>>, behaviour: Behaviour) {
    let _ = stream.set_read_timeout(Some(PATIENCE));
    loop {
        let Some(head) = read_head(&mut stream) else {
            return;
        };
        let length = header_value(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push(head);
        if behaviour == Behaviour::Silent {
            let mut sink = [0u8; 1];
            let _ = stream.read(&mut sink);
            return;
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Origin: yes\r\n\r\n{ORIGIN_BODY}",
            ORIGIN_BODY.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Reads up to the blank line ending an HTTP head; `None` at EOF.
pub fn read_head(stream: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The first value of header `name` (case-insensitive) in a raw head.
pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Every value of header `name` in a raw head.
pub fn header_values(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .skip(1)
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .collect()
}

/// A loopback TCP echo server, for tunnels.
pub struct Echo {
    pub addr: SocketAddr,
}

impl Echo {
    pub fn start() -> Self {
        Self::bind("127.0.0.1:0".parse().unwrap())
    }

    pub fn bind(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let _ = std::io::copy(&mut reader, &mut stream);
                });
            }
        });
        Self { addr }
    }
}

/// One record of a [`FakeDns`] zone.
#[derive(Clone, Debug)]
pub enum Zone {
    A(&'static str, Ipv4Addr, u32),
    Aaaa(&'static str, std::net::Ipv6Addr, u32),
    Cname(&'static str, &'static str, u32),
}

/// A loopback DNS server (UDP and TCP on one port) that records every question and answers from
/// a zone, NXDOMAIN for other names. Names starting with `tc.` are answered over UDP with TC set
/// and no records, so clients must retry over TCP. Silent, it never answers.
pub struct FakeDns {
    pub addr: SocketAddr,
    pub queries: Arc<Mutex<Vec<String>>>,
}

impl FakeDns {
    /// A zone of A records with TTL 60.
    pub fn start(records: &[(&'static str, Ipv4Addr)], silent: bool) -> Self {
        let zone: Vec<Zone> = records.iter().map(|(n, a)| Zone::A(n, *a, 60)).collect();
        Self::zone(zone, silent)
    }

    pub fn zone(zone: Vec<Zone>, silent: bool) -> Self {
        // UDP picks a free port; TCP on the same number may be taken by another test's socket,
        // so try a few fresh ports (as egressd's own DNS listener does).
        let (socket, tcp) = (0..50)
            .find_map(|_| {
                let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
                let tcp = TcpListener::bind(socket.local_addr().ok()?).ok()?;
                Some((socket, tcp))
            })
            .expect("a port free for both UDP and TCP");
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let zone = Arc::new(zone);
        {
            let (log, zone) = (queries.clone(), zone.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    if let Some(response) = dns_answer(&buf[..n], &zone, &log, "udp", silent) {
                        let _ = socket.send_to(&response, peer);
                    }
                }
            });
        }
        {
            let (log, zone) = (queries.clone(), zone.clone());
            thread::spawn(move || {
                for stream in tcp.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut query).is_err() {
                        continue;
                    }
                    if let Some(response) = dns_answer(&query, &zone, &log, "tcp", silent) {
                        let mut framed = (response.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&response);
                        let _ = stream.write_all(&framed);
                    }
                }
            });
        }
        Self { addr, queries }
    }

    /// The questions seen so far, as "name. TYPE" (TCP ones suffixed " tcp").
    pub fn seen(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

fn dns_answer(
    bytes: &[u8],
    zone: &[Zone],
    log: &Mutex<Vec<String>>,
    transport: &str,
    silent: bool,
) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    let query = Message::from_vec(bytes).ok()?;
    let question = query.queries.first()?.clone();
    let name = question.name().to_ascii().to_lowercase();
    let suffix = if transport == "tcp" { " tcp" } else { "" };
    log.lock()
        .unwrap()
        .push(format!("{name} {}{suffix}", question.query_type()));
    if silent {
        return None;
    }
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.message_type = MessageType::Response;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_query(question.clone());
    if name.starts_with("tc.") && transport == "udp" {
        response.metadata.truncation = true;
        return response.to_vec().ok();
    }
    let owner = |n: &str| Name::from_ascii(format!("{n}.")).unwrap();
    let mut known = false;
    let mut current = name.trim_end_matches('.').to_owned();
    // Follow CNAMEs within the zone, as a recursive resolver would.
    for _ in 0..8 {
        let mut next = None;
        for record in zone {
            match record {
                Zone::Cname(n, target, ttl) if *n == current => {
                    known = true;
                    response.add_answer(Record::from_rdata(
                        owner(n),
                        *ttl,
                        RData::CNAME(CNAME(owner(target))),
                    ));
                    next = Some(target.to_string());
                }
                Zone::A(n, a, ttl) if *n == current => {
                    known = true;
                    if question.query_type() == RecordType::A {
                        response.add_answer(Record::from_rdata(owner(n), *ttl, RData::A(A(*a))));
                    }
                }
                Zone::Aaaa(n, a, ttl) if *n == current => {
                    known = true;
                    if question.query_type() == RecordType::AAAA {
                        response.add_answer(Record::from_rdata(
                            owner(n),
                            *ttl,
                            RData::AAAA(AAAA(*a)),
                        ));
                    }
                }
                _ => {}
            }
        }
        match next {
            Some(target) => current = target,
            None => break,
        }
    }
    if !known {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response.to_vec().ok()
}

/// The outcome of one curl run.
#[derive(Debug)]
pub struct Curl {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// Runs `curl -x PROXY ARGS...` with a bounded time; returns status, response headers and body.
pub fn curl(proxy: &str, args: &[&str]) -> Curl {
    let dir = tempfile::tempdir().unwrap();
    let headers_file = dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-x", proxy, "-D"])
        .arg(&headers_file)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("curl is installed (CI installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Curl {
        status: code.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&headers_file).unwrap_or_default(),
        body: body.to_owned(),
    }
}

/// Writes `text` to a new file in `dir`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Appended to test policies that resolve nothing: should a bug let a name through, its lookup
/// goes to a closed loopback port, never to the host's resolver. (`[dns]` must come last.)
pub const NO_RESOLVER: &str = "[dns]\nupstreams = [\"127.0.0.1:9\"]\n";

/// A policy that allows `origin.test` (static record 127.0.0.1) and `127.0.0.1` itself on the
/// given ports, with the carve-out loopback needs, plus `extra` TOML.
pub fn loopback_policy(ports: &[u16], extra: &str) -> String {
    let ports = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "version = 1\n[defaults]\naction = \"deny\"\n\n[[allow]]\nhost = \"origin.test\"\nports = [{ports}]\n\n\
         [[allow]]\ncidr = \"127.0.0.1/32\"\nports = [{ports}]\n\n[[danger_carve_out]]\ncidr = \"127.0.0.1/32\"\n\
         ports = [{ports}]\n\n[headers]\n\"X-Egressd-Sandbox\" = \"{{sandbox_id}}\"\n\n{extra}\n\
         [dns.static]\n\"origin.test\" = [\"127.0.0.1\"]\n{NO_RESOLVER}"
    )
}

/// Runs the named test of this binary again inside a fresh network namespace where only `lo` is
/// up and `addrs` are added to it, and asserts it passed. Needs root (CI runs as root): a
/// machine where the namespace cannot be made fails the test loudly, never skips it.
pub fn run_in_netns(test: &str, addrs: &[&str]) {
    let exe = std::env::current_exe().unwrap();
    let mut script = String::from("set -e; ip link set lo up; ");
    for addr in addrs {
        script.push_str(&format!("ip addr add {addr} dev lo; "));
    }
    script.push_str("exec \"$0\" \"$@\"");
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .arg(exe)
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("EGRESSD_TEST_IN_NETNS", "1")
        .output()
        .expect("unshare (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the network-namespace test {test} failed (it needs root and util-linux unshare):\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "{test} did not run inside the namespace:\n{text}"
    );
}

/// Panics unless running inside a namespace made by [`run_in_netns`].
pub fn assert_in_netns() {
    assert!(
        std::env::var_os("EGRESSD_TEST_IN_NETNS").is_some(),
        "this test runs only inside a network namespace; run the test that starts it"
    );
}

/// A parent proxy for chaining tests: records every request head, answers CONNECT with 200 and
/// splices the tunnel to one fixed loopback address.
pub struct RecordingParent {
    pub addr: SocketAddr,
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl RecordingParent {
    pub fn start(tunnel_to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let log = heads.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut client) = stream else { continue };
                let log = log.clone();
                thread::spawn(move || {
                    let Some(head) = read_head(&mut client) else {
                        return;
                    };
                    log.lock().unwrap().push(head.clone());
                    if !head.starts_with("CONNECT ") {
                        let _ = client.write_all(
                            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n",
                        );
                        return;
                    }
                    let Ok(mut upstream) = TcpStream::connect(tunnel_to) else {
                        return;
                    };
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    let (mut c2, mut u2) =
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    thread::spawn(move || std::io::copy(&mut u2, &mut c2));
                    let _ = std::io::copy(&mut client, &mut upstream);
                });
            }
        });
        Self { addr, heads }
    }
}

/// A loopback (or namespace) UDP echo server that counts datagrams.
pub struct UdpEcho {
    pub datagrams: Arc<Mutex<usize>>,
}

impl UdpEcho {
    pub fn bind(addr: SocketAddr) -> Self {
        let socket = UdpSocket::bind(addr).unwrap();
        let datagrams = Arc::new(Mutex::new(0));
        let count = datagrams.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                *count.lock().unwrap() += 1;
                let _ = socket.send_to(&buf[..n], peer);
            }
        });
        Self { datagrams }
    }
}

/// Makes connections as another user: a copy of this test binary, in a directory every user may
/// read, run under `setpriv` with the probe helper test selected.
pub struct Prober {
    _dir: tempfile::TempDir,
    exe: PathBuf,
}

impl Prober {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.path().join("probe");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { _dir: dir, exe }
    }

    /// Connects (TCP) or sends and awaits an echo (UDP) to `addr` as `uid`: "ok", "refused",
    /// "timeout" or "error:...".
    pub fn probe(&self, uid: u32, udp: bool, addr: SocketAddr) -> String {
        let spec = format!("{} {addr}", if udp { "udp" } else { "tcp" });
        let out = Command::new("setpriv")
            .args([
                "--reuid",
                &uid.to_string(),
                "--regid",
                &uid.to_string(),
                "--clear-groups",
            ])
            .arg(&self.exe)
            .args([
                "firewall::probe",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("EGRESSD_PROBE", &spec)
            .output()
            .expect("setpriv (util-linux) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.split_once("PROBE: ")
                    .map(|(_, result)| result.trim().to_owned())
            })
            .unwrap_or_else(|| {
                panic!(
                    "probe {spec} as uid {uid} printed no result:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }
}

/// The probe itself, run by [`Prober::probe`] in a child process.
pub fn probe_once(spec: &str) -> String {
    use std::io::ErrorKind;
    let (proto, addr) = spec.split_once(' ').unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let patience = Duration::from_secs(3);
    let result = if proto == "tcp" {
        TcpStream::connect_timeout(&addr, patience).map(|_| ())
    } else {
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        UdpSocket::bind(bind).and_then(|socket| {
            socket.set_read_timeout(Some(patience))?;
            socket.connect(addr)?;
            socket.send(b"probe")?;
            let mut buf = [0u8; 16];
            socket.recv(&mut buf).map(|_| ())
        })
    };
    match result {
        Ok(()) => "ok".to_owned(),
        // A reset, an ICMP unreachable, or (Linux, for a datagram rejected on output) EPERM: all
        // mean the firewall refused at once.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::PermissionDenied
            ) =>
        {
            "refused".to_owned()
        }
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            "timeout".to_owned()
        }
        Err(e) => format!("error:{e}"),
    }
}
