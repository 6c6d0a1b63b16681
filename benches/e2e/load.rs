//! Load generators: keep-alive HTTP, CONNECT bulk transfer, new tunnels, DNS queries. Each runs
//! for a bounded time (and a bounded number of operations) and stops by itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::servers::find;

/// How a client reaches the origin.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// Straight to the origin: the baseline.
    Direct,
    /// Through an HTTP proxy at this address, sending this header line (empty, or
    /// `Proxy-Authorization: ...\r\n`) with every request.
    Proxy(SocketAddr, &'static str),
    /// Through egressd's SOCKS5 listener at this address, logging in with this secret (empty:
    /// no login). Tunnels only: it carries no absolute-form requests.
    Socks(SocketAddr, &'static str),
}

/// Completed operations and their latencies.
#[derive(Debug, Default)]
pub struct Stats {
    pub ops: u64,
    pub errors: u64,
    pub reconnects: u64,
    pub secs: f64,
    pub latencies_us: Vec<u32>,
}

impl Stats {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    /// One operation done, started at `started`.
    fn completed(&mut self, started: Instant) {
        self.ops += 1;
        let micros = started.elapsed().as_micros();
        self.latencies_us
            .push(u32::try_from(micros).unwrap_or(u32::MAX));
    }

    fn merge(&mut self, other: Stats) {
        self.ops += other.ops;
        self.errors += other.errors;
        self.reconnects += other.reconnects;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Upper bound on operations per worker, so a runaway loop still ends.
const MAX_OPS_PER_WORKER: u64 = 10_000_000;

/// `concurrency` keep-alive connections, each sending GETs back to back for `duration`.
pub async fn http(via: Via, origin: SocketAddr, concurrency: usize, duration: Duration) -> Stats {
    let (request, target) = match via {
        Via::Direct => (
            format!("GET /bench HTTP/1.1\r\nHost: {origin}\r\n\r\n"),
            origin,
        ),
        Via::Proxy(proxy, auth) => (
            format!("GET http://{origin}/bench HTTP/1.1\r\nHost: {origin}\r\n{auth}\r\n"),
            proxy,
        ),
        // SOCKS carries tunnels only.
        Via::Socks(..) => return Stats::default(),
    };
    run_workers(concurrency, duration, move |stop| {
        let request = request.clone();
        async move {
            let mut stats = Stats::default();
            let mut buf = Vec::with_capacity(4096);
            // A peer that closes after each response (no client keep-alive) is reconnected to,
            // and the reconnection counts in its latency.
            let mut stream: Option<TcpStream> = None;
            while !stop.load(Ordering::Relaxed) && stats.ops < MAX_OPS_PER_WORKER {
                let started = Instant::now();
                if stream.is_none() {
                    match TcpStream::connect(target).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            buf.clear();
                            stream = Some(s);
                        }
                        Err(_) => {
                            stats.errors += 1;
                            break;
                        }
                    }
                }
                let Some(s) = stream.as_mut() else { break };
                let ok = s.write_all(request.as_bytes()).await.is_ok()
                    && read_response(s, &mut buf).await.is_some();
                if !ok {
                    stream = None;
                    stats.reconnects += 1;
                    if stats.reconnects > stats.ops + 10 {
                        stats.errors += 1;
                        break;
                    }
                    continue;
                }
                stats.completed(started);
            }
            stats
        }
    })
    .await
}

/// One new connection per operation: (CONNECT through the proxy, then) one GET, then close.
pub async fn tunnels(
    via: Via,
    origin: SocketAddr,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let auth = match via {
        Via::Direct | Via::Socks(..) => "",
        Via::Proxy(_, auth) => auth,
    };
    let connect = format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n{auth}\r\n");
    let get = format!("GET /t HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n");
    run_workers(concurrency, duration, move |stop| {
        let (connect, get) = (connect.clone(), get.clone());
        async move {
            let mut stats = Stats::default();
            let mut buf = Vec::with_capacity(4096);
            while !stop.load(Ordering::Relaxed) && stats.ops < MAX_OPS_PER_WORKER {
                let started = Instant::now();
                let ok = async {
                    let mut stream = match via {
                        Via::Direct => TcpStream::connect(origin).await.ok()?,
                        Via::Proxy(proxy, _) => {
                            let mut s = TcpStream::connect(proxy).await.ok()?;
                            s.write_all(connect.as_bytes()).await.ok()?;
                            let head = read_head(&mut s, &mut buf).await?;
                            if !head.starts_with(b"HTTP/1.1 200")
                                && !head.starts_with(b"HTTP/1.0 200")
                            {
                                return None;
                            }
                            s
                        }
                        Via::Socks(socks, secret) => socks_open(socks, secret, origin).await?,
                    };
                    let _ = stream.set_nodelay(true);
                    stream.write_all(get.as_bytes()).await.ok()?;
                    read_response(&mut stream, &mut buf).await?;
                    Some(())
                }
                .await;
                match ok {
                    Some(()) => {
                        stats.completed(started);
                    }
                    None => stats.errors += 1,
                }
            }
            stats
        }
    })
    .await
}

/// A SOCKS5 `CONNECT` to `dest` through `socks` (with the RFC 1929 login `egressd`/`secret`
/// unless `secret` is empty): the stream once the reply says success.
async fn socks_open(socks: SocketAddr, secret: &str, dest: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(socks).await.ok()?;
    let method = if secret.is_empty() { 0 } else { 2 };
    s.write_all(&[5, 1, method]).await.ok()?;
    let mut answer = [0u8; 2];
    s.read_exact(&mut answer).await.ok()?;
    if answer[1] == 2 {
        let mut login = vec![1, 7];
        login.extend_from_slice(b"egressd");
        login.push(u8::try_from(secret.len()).ok()?);
        login.extend_from_slice(secret.as_bytes());
        s.write_all(&login).await.ok()?;
        s.read_exact(&mut answer).await.ok()?;
    }
    if answer[1] != 0 {
        return None;
    }
    let std::net::IpAddr::V4(ip) = dest.ip() else {
        return None;
    };
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&ip.octets());
    request.extend_from_slice(&dest.port().to_be_bytes());
    s.write_all(&request).await.ok()?;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await.ok()?;
    (reply[1] == 0).then_some(s)
}

/// Downloads `total` bytes from the bulk source (through a CONNECT tunnel when proxied); MB/s.
pub async fn bulk(via: Via, source: SocketAddr, total: usize) -> Option<f64> {
    let mut stream = match via {
        Via::Direct => TcpStream::connect(source).await.ok()?,
        Via::Proxy(proxy, auth) => {
            let mut s = TcpStream::connect(proxy).await.ok()?;
            s.write_all(
                format!("CONNECT {source} HTTP/1.1\r\nHost: {source}\r\n{auth}\r\n").as_bytes(),
            )
            .await
            .ok()?;
            let mut buf = Vec::new();
            let head = read_head(&mut s, &mut buf).await?;
            if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
                return None;
            }
            // Bytes after the head belong to the body; the source has not sent any yet.
            s
        }
        Via::Socks(socks, secret) => socks_open(socks, secret, source).await?,
    };
    let started = Instant::now();
    stream.write_all(b"g").await.ok()?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0usize;
    while got < total {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        got += n;
    }
    (got == total).then(|| total as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// DNS queries from `concurrency` sockets, each one query at a time, cycling through `names`.
pub async fn dns(
    server: SocketAddr,
    names: Vec<Vec<u8>>,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let names = Arc::new(names);
    run_workers(concurrency, duration, move |stop| {
        let names = names.clone();
        async move {
            let mut stats = Stats::default();
            let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
                return stats;
            };
            if socket.connect(server).await.is_err() {
                return stats;
            }
            let mut buf = [0u8; 1500];
            let mut id: u16 = rand_start(&socket);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && stats.ops < MAX_OPS_PER_WORKER {
                id = id.wrapping_add(1);
                let mut query = names[i % names.len()].clone();
                i += 1;
                query[0..2].copy_from_slice(&id.to_be_bytes());
                let started = Instant::now();
                if socket.send(&query).await.is_err() {
                    stats.errors += 1;
                    continue;
                }
                let answered = tokio::time::timeout(Duration::from_secs(1), async {
                    loop {
                        let n = socket.recv(&mut buf).await.ok()?;
                        if n >= 2 && buf[0..2] == id.to_be_bytes() {
                            return Some(());
                        }
                    }
                })
                .await;
                match answered {
                    Ok(Some(())) => {
                        stats.completed(started);
                    }
                    _ => stats.errors += 1,
                }
            }
            stats
        }
    })
    .await
}

fn rand_start(socket: &UdpSocket) -> u16 {
    socket.local_addr().map_or(1, |a| a.port())
}

/// A DNS query for `name` (type A, RD set, no EDNS); the ID is filled in per send.
pub fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Runs `concurrency` workers until `duration` passes, and merges their stats.
async fn run_workers<F, Fut>(concurrency: usize, duration: Duration, worker: F) -> Stats
where
    F: Fn(Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Stats> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(stop.clone())))
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Stats::default();
    for handle in handles {
        // A worker stuck on a dead peer is abandoned after a grace period, not awaited forever.
        match tokio::time::timeout(Duration::from_secs(5), handle).await {
            Ok(Ok(stats)) => total.merge(stats),
            _ => total.errors += 1,
        }
    }
    total.secs = started
        .elapsed()
        .as_secs_f64()
        .min(duration.as_secs_f64() + 0.05);
    total
}

/// Reads one `200` response head and its Content-Length body; `buf` keeps any bytes that follow.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    read_response_of(stream, buf, "200").await
}

/// [`read_response`] for a response of `status`.
async fn read_response_of(stream: &mut TcpStream, buf: &mut Vec<u8>, status: &str) -> Option<()> {
    let head = read_head(stream, buf).await?;
    let text = std::str::from_utf8(&head).ok()?;
    let code = text.split(' ').nth(1)?;
    if !text.starts_with("HTTP/1.") || code != status {
        return None;
    }
    let length = text
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut chunk = [0u8; 4096];
    while buf.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..length);
    Some(())
}

/// Reads up to the end of a head; returns it and leaves what followed in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = buf[..end + 4].to_vec();
            buf.drain(..end + 4);
            return Some(head);
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Opens `count` tunnels to `echo` through the proxy and keeps them open; returns them.
pub async fn open_idle_tunnels(
    proxy: SocketAddr,
    auth: &str,
    echo: SocketAddr,
    count: usize,
) -> Vec<TcpStream> {
    let connect = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n{auth}\r\n");
    open_idle(proxy, connect, Answer::Head, count).await
}

/// Opens `count` keep-alive connections through the proxy, each after one `GET` through it
/// answered, and keeps them open and idle; returns them.
pub async fn open_idle_keepalives(
    proxy: SocketAddr,
    auth: &str,
    origin: SocketAddr,
    count: usize,
) -> Vec<TcpStream> {
    let request = format!("GET http://{origin}/idle HTTP/1.1\r\nHost: {origin}\r\n{auth}\r\n");
    open_idle(proxy, request, Answer::Response, count).await
}

/// Opens `count` keep-alive connections to the proxy, each after one `GET` the policy refuses
/// (`10.0.0.1`, a special range: a whole 403 answered without dialing), and keeps them open
/// and idle; returns them.
pub async fn open_idle_refused(proxy: SocketAddr, auth: &str, count: usize) -> Vec<TcpStream> {
    let request = format!("GET http://10.0.0.1/ HTTP/1.1\r\nHost: 10.0.0.1\r\n{auth}\r\n");
    open_idle(proxy, request, Answer::Refused, count).await
}

/// Opens `count` connections to the proxy that send nothing, and keeps them open; returns them.
/// egressd closes them after its header read timeout (10 s by default): hold them for less.
pub async fn open_silent(proxy: SocketAddr, count: usize) -> Vec<TcpStream> {
    open_idle(proxy, String::new(), Answer::Nothing, count).await
}

/// What a connection of [`open_idle`] waits for before it counts as open.
#[derive(Clone, Copy)]
enum Answer {
    /// A `200` head (a tunnel: nothing follows it).
    Head,
    /// A whole `200` response.
    Response,
    /// A whole `403` response.
    Refused,
    /// Nothing: the connection is open once connected (it sends nothing either).
    Nothing,
}

/// Opens `count` connections to the proxy, 64 at a time, each sending `request` and reading the
/// `answer`; returns those that got it.
async fn open_idle(
    proxy: SocketAddr,
    request: String,
    answer: Answer,
    count: usize,
) -> Vec<TcpStream> {
    let request = Arc::new(request);
    let mut open = Vec::with_capacity(count);
    let batch = 64;
    let mut remaining = count;
    while remaining > 0 {
        let n = remaining.min(batch);
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let request = request.clone();
                tokio::spawn(async move {
                    let mut s = TcpStream::connect(proxy).await.ok()?;
                    if request.is_empty() {
                        return Some(s);
                    }
                    s.write_all(request.as_bytes()).await.ok()?;
                    let mut buf = Vec::new();
                    match answer {
                        Answer::Head => {
                            let head = read_head(&mut s, &mut buf).await?;
                            head.starts_with(b"HTTP/1.1 200").then_some(s)
                        }
                        Answer::Response => read_response(&mut s, &mut buf).await.map(|()| s),
                        Answer::Refused => {
                            read_response_of(&mut s, &mut buf, "403").await.map(|()| s)
                        }
                        Answer::Nothing => Some(s),
                    }
                })
            })
            .collect();
        for handle in handles {
            if let Ok(Some(stream)) = handle.await {
                open.push(stream);
            }
        }
        remaining -= n;
    }
    open
}
