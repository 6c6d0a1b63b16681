//! End-to-end benchmark: egressd as a real process against a direct-path baseline measured in the
//! same run (and squid, tinyproxy and unbound when installed), all on loopback.
//!
//! ```text
//! cargo bench --bench e2e                 # full: several rounds, medians
//! cargo bench --bench e2e -- --quick      # CI: about a minute
//! cargo bench --bench e2e -- --json out.json
//! cargo bench --bench e2e -- --only http --peers none   # for profiling egressd alone
//! ```
//!
//! As root with util-linux `unshare`, it runs itself inside a fresh network namespace (only `lo`),
//! so nothing it starts can reach beyond the machine. Every load loop is bounded in time and
//! operations. It exits non-zero if an egressd figure cannot be measured. docs/benchmarks.md
//! explains each figure.

mod h2;
mod load;
mod peers;
mod report;
mod servers;
mod tls;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use load::Via;
use report::{Report, Row};

/// Sizes of one run.
struct Plan {
    quick: bool,
    /// Only these groups (startup, http, bulk, tunnels, tls, h2, dns, idle, burst, instances); empty
    /// for all.
    only: Vec<String>,
    /// Only these peers (squid, tinyproxy, unbound; `none`); `None` for every installed one.
    peers: Option<Vec<String>>,
    duration: Duration,
    rounds: usize,
    concurrency: Vec<usize>,
    tunnel_concurrency: usize,
    bulk_bytes: usize,
    idle_tunnels: usize,
    /// Idle tunnels and as many idle keep-alive connections opened at once, then closed.
    burst: usize,
    /// Inspected TLS sessions opened at once, then closed.
    sessions: usize,
    /// Idle egressd instances running at once, for their total PSS.
    instances: usize,
    startups: usize,
    dns_concurrency: usize,
}

impl Plan {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    fn wants_peer(&self, peer: &str) -> bool {
        self.peers
            .as_ref()
            .is_none_or(|peers| peers.iter().any(|p| p == peer))
    }

    fn new(quick: bool, only: Vec<String>, peers: Option<Vec<String>>) -> Self {
        if quick {
            Self {
                quick,
                only,
                peers,
                duration: Duration::from_millis(1500),
                rounds: 1,
                concurrency: vec![1, 32],
                tunnel_concurrency: 16,
                bulk_bytes: 128 << 20,
                idle_tunnels: 1000,
                burst: 1000,
                sessions: 250,
                instances: 20,
                startups: 5,
                dns_concurrency: 32,
            }
        } else {
            Self {
                quick,
                only,
                peers,
                duration: Duration::from_secs(4),
                rounds: 3,
                concurrency: vec![1, 16, 64],
                tunnel_concurrency: 16,
                bulk_bytes: 1 << 30,
                // The sandbox caps open files at 20,000 per process and an idle tunnel costs
                // egressd two; 9,000 is the most that fits. docs/benchmarks.md extrapolates.
                idle_tunnels: 9000,
                // 5,000 tunnels (two sockets each in egressd) and 5,000 keep-alive connections
                // (one each, and a few pooled origin connections) fit the 20,000 files.
                burst: 5000,
                sessions: 1000,
                instances: 100,
                startups: 20,
                dns_concurrency: 32,
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    if let Some(code) = reexec_in_namespace() {
        return code;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let list = |flag: &str| -> Option<Vec<String>> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|s| s.split(',').map(str::to_owned).collect())
    };
    let plan = Plan::new(quick, list("--only").unwrap_or_default(), list("--peers"));
    let report = runtime.block_on(run(&plan));
    print!("{}", report.table());
    if let Some(path) = json {
        let written = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, report.json()));
        match written {
            Ok(()) => println!("JSON report written to {}", path.display()),
            Err(e) => {
                eprintln!("cannot write the JSON report to {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let missing = report.missing_egressd_figures();
    if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "egressd figures could not be measured: {}",
            missing.join(", ")
        );
        ExitCode::FAILURE
    }
}

/// Runs this benchmark again inside a fresh network namespace when possible; `Some(code)` is the
/// child's result, `None` means run here.
fn reexec_in_namespace() -> Option<ExitCode> {
    if std::env::var_os("EGRESSD_BENCH_IN_NETNS").is_some() {
        return None;
    }
    let can_unshare = std::process::Command::new("unshare")
        .args(["--net", "--", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !can_unshare {
        eprintln!(
            "note: no network namespace (needs root and util-linux unshare); running on this host's loopback"
        );
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let script = "ip link set lo up && \
        (sysctl -qw net.ipv4.ip_local_port_range='1024 65535' net.ipv4.tcp_tw_reuse=1 || true) && \
        exec \"$0\" \"$@\"";
    let status = std::process::Command::new("unshare")
        .args(["--net", "--", "sh", "-c", script])
        .arg(exe)
        .args(std::env::args().skip(1))
        .env("EGRESSD_BENCH_IN_NETNS", "1")
        .status();
    Some(if status.is_ok_and(|s| s.success()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn egressd_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_egressd"))
}

async fn run(plan: &Plan) -> Report {
    let mut report = Report::new(plan.quick);
    let origin = servers::http_origin().await;
    let source = servers::bulk_source(plan.bulk_bytes).await;
    let echo = servers::echo().await;
    let upstream = servers::dns_upstream().await;
    let current = peers::Build::current(egressd_bin());
    let baseline = peers::Build::baseline();
    let builds: Vec<&peers::Build> = std::iter::once(&current).chain(baseline.as_ref()).collect();
    let ports = [origin.port(), source.port(), echo.port()];

    // Start-up and idle memory first, on a quiet machine.
    if plan.wants("startup") {
        let mut start = Row::new("start to ready", "ms");
        let mut rss = Row::new("idle RSS (proxy + DNS stub)", "MiB");
        let runs = peers::egressd_startups(&builds, plan.startups, upstream);
        for (build, (times, rss_mib)) in builds.iter().zip(runs) {
            start.set(build.name, median(&times));
            rss.set(build.name, median(&rss_mib));
        }
        report.push(start);
        report.push(rss);
    }
    if plan.wants("instances") {
        instances(plan, &builds, upstream, &mut report);
    }

    // The current build also serves SOCKS5, measured beside its CONNECT (tunnels, bulk).
    let egressd = peers::egressd_with(
        &current,
        &ports,
        upstream,
        true,
        &["--socks-listen", "127.0.0.1:0"],
    );
    let socks = egressd
        .socks
        .map(|(addr, secret)| (SOCKS, Via::Socks(addr, secret)));
    let egressd_base = baseline
        .as_ref()
        .map(|build| peers::egressd(build, &ports, upstream, true));
    let squid = plan.wants_peer("squid").then(peers::squid).flatten();
    let tinyproxy = plan
        .wants_peer("tinyproxy")
        .then(peers::tinyproxy)
        .flatten();
    let unbound = plan
        .wants_peer("unbound")
        .then(|| peers::unbound(upstream))
        .flatten();
    for peer in [squid.as_ref(), tinyproxy.as_ref(), unbound.as_ref()]
        .into_iter()
        .flatten()
    {
        report.startup(
            peer.name,
            peer.startup.as_secs_f64() * 1000.0,
            peer.rss_mib(),
        );
    }
    let proxies: Vec<&peers::Peer> = [
        Some(&egressd),
        egressd_base.as_ref(),
        squid.as_ref(),
        tinyproxy.as_ref(),
    ]
    .into_iter()
    .flatten()
    .collect();

    let http_levels: &[usize] = if plan.wants("http") {
        &plan.concurrency
    } else {
        &[]
    };
    for &concurrency in http_levels {
        let mut rows = [
            Row::new(&format!("HTTP keep-alive, {concurrency} conn"), "req/s"),
            Row::new(&format!("HTTP p50, {concurrency} conn"), "ms"),
            Row::new(&format!("HTTP p99, {concurrency} conn"), "ms"),
            Row::new(&format!("proxy CPU per request, {concurrency} conn"), "µs"),
            Row::new(
                &format!("proxy user CPU per request, {concurrency} conn"),
                "µs",
            ),
            Row::new(
                &format!("proxy system CPU per request, {concurrency} conn"),
                "µs",
            ),
        ];
        let mut samples: Vec<(&str, Vec<[f64; 6]>)> = Vec::new();
        for _ in 0..plan.rounds {
            let mut direct = load::http(Via::Direct, origin, concurrency, plan.duration).await;
            push(
                &mut samples,
                "direct",
                [
                    direct.rate(),
                    direct.percentile_ms(0.5),
                    direct.percentile_ms(0.99),
                    // No proxy: no proxy CPU (the rows stay empty for direct).
                    f64::NAN,
                    f64::NAN,
                    f64::NAN,
                ],
            );
            for proxy in &proxies {
                let [user, system] = proxy.cpu_split_secs();
                let mut s = load::http(proxy.via(), origin, concurrency, plan.duration).await;
                let [user_after, system_after] = proxy.cpu_split_secs();
                let per_op = |secs: f64| secs * 1e6 / s.ops.max(1) as f64;
                let (user_us, system_us) =
                    (per_op(user_after - user), per_op(system_after - system));
                let figure = if s.errors > s.ops {
                    [0.0; 6]
                } else {
                    [
                        s.rate(),
                        s.percentile_ms(0.5),
                        s.percentile_ms(0.99),
                        user_us + system_us,
                        user_us,
                        system_us,
                    ]
                };
                push(&mut samples, proxy.name, figure);
            }
        }
        set_medians(&mut rows, &samples);
        report.extend(rows);
    }
    if plan.wants("http") {
        let concurrency = plan.concurrency.last().copied().unwrap_or(16);
        let without = peers::egressd(&current, &ports, upstream, false);
        let what =
            format!("credential check: proxy CPU per request with / without, {concurrency} conn");
        report.push(cpu_ratio(&what, plan, &egressd, &without, origin, concurrency).await);
        drop(without);
        let metered = peers::egressd_metered(&current, &ports, upstream);
        let what = format!(
            "metrics: proxy CPU per request with / without --metrics-listen, {concurrency} conn"
        );
        report.push(cpu_ratio(&what, plan, &metered, &egressd, origin, concurrency).await);
    }

    let mut bulk = [
        Row::new("CONNECT bulk download", "MB/s"),
        Row::new("machine CPU during bulk", "cores"),
        Row::new("CPU per GB moved (all processes)", "core-s"),
        Row::new("proxy CPU per GB moved (its process only)", "core-s"),
    ];
    let mut samples: Vec<(&str, Vec<[f64; 4]>)> = Vec::new();
    for _ in 0..if plan.wants("bulk") { plan.rounds } else { 0 } {
        for (name, via) in contenders(&proxies).chain(socks) {
            let proxy = proxies.iter().find(|p| p.name == name);
            let proxy_cpu = proxy.map(|p| p.cpu_secs());
            let before = peers::machine_ticks();
            let mbps = load::bulk(via, source, plan.bulk_bytes).await;
            let cores = peers::busy_cores(before, peers::machine_ticks());
            // The machine's figure counts whatever else runs on it; the proxy's own does not.
            let gb = plan.bulk_bytes as f64 / 1e9;
            let own = match (proxy, proxy_cpu) {
                (Some(p), Some(cpu)) => (p.cpu_secs() - cpu) / gb,
                _ => f64::NAN,
            };
            match mbps {
                Some(mbps) if mbps > 0.0 => {
                    push(
                        &mut samples,
                        name,
                        [mbps, cores, cores / (mbps / 1000.0), own],
                    );
                }
                _ => push(&mut samples, name, [0.0; 4]),
            }
        }
    }
    set_medians(&mut bulk, &samples);
    if plan.wants("bulk") {
        let socks_rows = socks_rows(&bulk[0], "SOCKS5 bulk download", "MB/s");
        report.extend(bulk);
        report.extend(socks_rows);
    }

    let mut rows = [
        Row::new("new tunnels (connect, CONNECT, GET, close)", "tunnels/s"),
        Row::new("new tunnel p50", "ms"),
        Row::new("new tunnel p99", "ms"),
        Row::new("load generator CPU during tunnels", "cores"),
    ];
    let mut samples: Vec<(&str, Vec<[f64; 3]>)> = Vec::new();
    let mut generator_cpu: Vec<(&str, Vec<f64>)> = Vec::new();
    for _ in 0..if plan.wants("tunnels") {
        plan.rounds
    } else {
        0
    } {
        for (name, via) in contenders(&proxies).chain(socks) {
            let cpu_before = peers::cpu_secs(std::process::id());
            let mut s = load::tunnels(via, origin, plan.tunnel_concurrency, plan.duration).await;
            let cores = (peers::cpu_secs(std::process::id()) - cpu_before) / s.secs.max(0.001);
            let figure = if s.errors > s.ops {
                [0.0; 3]
            } else {
                [s.rate(), s.percentile_ms(0.5), s.percentile_ms(0.99)]
            };
            push(&mut samples, name, figure);
            match generator_cpu.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(cores),
                None => generator_cpu.push((name, vec![cores])),
            }
            // Let closed connections drain before the next contender.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    set_medians(&mut rows[..3], &samples);
    for (name, values) in &generator_cpu {
        rows[3].set(name, median(values));
    }
    if plan.wants("tunnels") {
        let socks_rows = socks_rows(
            &rows[0],
            "SOCKS5 new tunnels (connect, login, CONNECT, GET, close)",
            "tunnels/s",
        );
        report.extend(rows);
        report.extend(socks_rows);
    }

    if plan.wants("tls") {
        let (tls_origin, origin_ca) = tls::origin(plan.bulk_bytes).await;
        let inspecting = tls::egressd(&current, tls_origin, &origin_ca);
        let client = tls::client(&origin_ca, &inspecting);
        let rows = tls::rows(
            &inspecting,
            &client,
            tls_origin.port(),
            plan.tunnel_concurrency,
            plan.duration,
            plan.rounds,
        )
        .await;
        report.extend(rows);
    }
    if plan.wants("h2") {
        // More streams than egressd lets run at once would only queue in the client.
        let size = if plan.quick { 4 << 20 } else { 32 << 20 };
        report.extend(h2::rows(&current, 128, size).await);
    }

    let resolvers: Vec<(&peers::Peer, std::net::SocketAddr)> = [
        egressd.dns.map(|a| (&egressd, a)),
        egressd_base.as_ref().and_then(|b| b.dns.map(|a| (b, a))),
        unbound.as_ref().and_then(|u| u.dns.map(|a| (u, a))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mixes = if plan.wants("dns") { 3 } else { 0 };
    for (mix, names) in [
        ("REFUSED", vec![load::dns_query("blocked.example.org")]),
        (
            "allowlisted (cached)",
            vec![load::dns_query("www.allowed.test")],
        ),
        (
            "half and half",
            vec![
                load::dns_query("blocked.example.org"),
                load::dns_query("www.allowed.test"),
            ],
        ),
    ]
    .into_iter()
    .take(mixes)
    {
        let mut rows = [
            Row::new(&format!("DNS {mix}"), "queries/s"),
            Row::new(&format!("DNS {mix} p99"), "ms"),
            Row::new(&format!("DNS {mix}: server CPU per query"), "µs"),
        ];
        let mut samples: Vec<(&str, Vec<[f64; 3]>)> = Vec::new();
        for _ in 0..plan.rounds {
            for (server, addr) in &resolvers {
                let cpu = server.cpu_secs();
                let mut s =
                    load::dns(*addr, names.clone(), plan.dns_concurrency, plan.duration).await;
                let cpu_us = server.cpu_us_per_op(cpu, s.ops);
                let figure = if s.errors > s.ops {
                    [0.0; 3]
                } else {
                    [s.rate(), s.percentile_ms(0.99), cpu_us]
                };
                push(&mut samples, server.name, figure);
            }
        }
        set_medians(&mut rows, &samples);
        report.extend(rows);
    }

    for peer in [Some(&egressd), egressd_base.as_ref()]
        .into_iter()
        .flatten()
    {
        report.note(format!(
            "{} CPU over the whole run: {:.1} s",
            peer.name,
            peer.cpu_secs()
        ));
    }
    drop((egressd, egressd_base, squid, tinyproxy, unbound));

    // Idle tunnels and the burst last: they hold thousands of sockets. Each build gets a fresh
    // process, so what earlier groups left in its heap does not count.
    if plan.wants("idle") {
        let mut rows = [
            Row::new(
                &format!("RSS with {} idle tunnels", plan.idle_tunnels),
                "MiB",
            ),
            Row::new("RSS per idle tunnel", "KiB"),
            Row::new("RSS at 10,000 idle tunnels (extrapolated)", "MiB"),
        ];
        for build in &builds {
            let peer = peers::egressd(build, &ports, upstream, true);
            idle_tunnels(plan, &peer, echo, &mut rows).await;
        }
        report.extend(rows);
    }
    if plan.wants("burst") {
        let mut rows = burst_rows(plan.burst);
        for build in &builds {
            let peer = peers::egressd(build, &ports, upstream, true);
            burst(plan, &peer, origin, echo, &mut rows).await;
        }
        report.extend(rows);
        let mut rows = session_burst_rows(plan.sessions);
        let (tls_origin, origin_ca) = tls::origin(1024).await;
        for build in &builds {
            let peer = tls::egressd(build, tls_origin, &origin_ca);
            let client = tls::client(&origin_ca, &peer);
            session_burst(plan, &peer, &client, tls_origin.port(), &mut rows).await;
        }
        report.extend(rows);
    }
    report
}

async fn idle_tunnels(
    plan: &Plan,
    egressd: &peers::Peer,
    echo: std::net::SocketAddr,
    rows: &mut [Row; 3],
) {
    let before = egressd.rss_mib();
    let tunnels =
        load::open_idle_tunnels(egressd.addr, egressd.auth, echo, plan.idle_tunnels).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with = egressd.rss_mib();
    let opened = tunnels.len();
    let per_tunnel_kib = if opened > 0 {
        (with - before) * 1024.0 / opened as f64
    } else {
        0.0
    };
    let name = egressd.name;
    rows[0].set(
        name,
        if opened == plan.idle_tunnels {
            with
        } else {
            0.0
        },
    );
    rows[1].set(name, per_tunnel_kib);
    rows[2].set(name, before + per_tunnel_kib * 10_000.0 / 1024.0);
    drop(tunnels);
}

/// How long after a burst's connections close its RSS is read: egressd gives memory back once
/// its open connections have stayed low for 3 s (counted once a second; `heap::Burst`).
const AFTER_BURST: Duration = Duration::from_secs(5);

/// Bursts of tunnels and keep-alive connections in a row, the first included.
const BURSTS: usize = 3;

fn burst_rows(n: usize) -> [Row; 12] {
    [
        Row::new("burst: RSS before", "MiB"),
        Row::new(
            &format!("burst: RSS with {n} idle tunnels + {n} idle keep-alive"),
            "MiB",
        ),
        Row::new("burst: RSS per idle keep-alive connection", "KiB"),
        Row::new("burst: RSS per idle tunnel", "KiB"),
        Row::new("burst: RSS 5 s after all closed", "MiB"),
        Row::new("burst: growth kept after closing", "share"),
        Row::new("burst: RSS after 1 s of light load (1 conn)", "MiB"),
        Row::new("burst: growth kept after light load", "share"),
        Row::new(
            &format!("burst: RSS 5 s after burst {BURSTS} of {BURSTS}"),
            "MiB",
        ),
        Row::new(
            &format!("burst: growth kept after burst {BURSTS} of {BURSTS}"),
            "share",
        ),
        Row::new(
            &format!("burst: {n} refused (403) keep-alive, growth kept"),
            "share",
        ),
        Row::new(
            &format!("burst: {n} connections sending nothing, growth kept"),
            "share",
        ),
    ]
}

/// The share of a burst's growth (`peak` over `before`) still held at `rss`. A share of zero is
/// a perfect figure, not a missing one: never below a hair above it.
fn kept(before: f64, peak: f64, rss: f64) -> f64 {
    ((rss - before) / (peak - before)).max(1e-3)
}

/// Memory after a burst: `plan.burst` idle tunnels, then as many idle keep-alive connections
/// (each after one request), all held at once, then all closed; a sidecar should give the
/// memory back once they are gone. Then the same twice more (no ratchet), and bursts of
/// connections that got only a 403, or sent nothing.
async fn burst(
    plan: &Plan,
    egressd: &peers::Peer,
    origin: std::net::SocketAddr,
    echo: std::net::SocketAddr,
    rows: &mut [Row; 12],
) {
    let settle = Duration::from_millis(500);
    tokio::time::sleep(settle).await;
    let before = egressd.rss_mib();
    let name = egressd.name;
    let per_kib = |mib: f64| mib * 1024.0 / plan.burst.max(1) as f64;
    let mut first_peak = 0.0;
    for round in 1..=BURSTS {
        let tunnels = load::open_idle_tunnels(egressd.addr, egressd.auth, echo, plan.burst).await;
        tokio::time::sleep(settle).await;
        let with_tunnels = egressd.rss_mib();
        let keepalives =
            load::open_idle_keepalives(egressd.addr, egressd.auth, origin, plan.burst).await;
        tokio::time::sleep(settle).await;
        let peak = egressd.rss_mib();
        let complete = tunnels.len() == plan.burst && keepalives.len() == plan.burst;
        drop((tunnels, keepalives));
        tokio::time::sleep(AFTER_BURST).await;
        let after = egressd.rss_mib();
        if round == 1 {
            first_peak = peak;
            rows[0].set(name, before);
            rows[1].set(name, if complete { peak } else { 0.0 });
            rows[2].set(name, per_kib(peak - with_tunnels));
            rows[3].set(name, per_kib(with_tunnels - before));
            rows[4].set(name, after);
            rows[5].set(name, kept(before, peak, after));
            // An allocator may return memory only on its next calls: a sidecar that goes on
            // serving lightly after a burst.
            load::http(egressd.via(), origin, 1, Duration::from_secs(1)).await;
            tokio::time::sleep(settle).await;
            let light = egressd.rss_mib();
            rows[6].set(name, light);
            rows[7].set(name, kept(before, peak, light));
        } else if round == BURSTS {
            rows[8].set(name, after);
            rows[9].set(name, kept(before, first_peak, after));
        }
    }
    let start = egressd.rss_mib();
    let refused = load::open_idle_refused(egressd.addr, egressd.auth, plan.burst).await;
    tokio::time::sleep(settle).await;
    let peak = egressd.rss_mib();
    let complete = refused.len() == plan.burst;
    drop(refused);
    tokio::time::sleep(AFTER_BURST).await;
    rows[10].set(
        name,
        if complete {
            kept(start, peak, egressd.rss_mib())
        } else {
            0.0
        },
    );
    let start = egressd.rss_mib();
    let silent = load::open_silent(egressd.addr, plan.burst).await;
    tokio::time::sleep(settle).await;
    let peak = egressd.rss_mib();
    let complete = silent.len() == plan.burst;
    drop(silent);
    tokio::time::sleep(AFTER_BURST).await;
    rows[11].set(
        name,
        if complete {
            kept(start, peak, egressd.rss_mib())
        } else {
            0.0
        },
    );
}

fn session_burst_rows(n: usize) -> [Row; 4] {
    [
        Row::new(
            &format!("burst: RSS with {n} idle inspected sessions"),
            "MiB",
        ),
        Row::new("burst: RSS per idle inspected session", "KiB"),
        Row::new("burst: inspected sessions, RSS 5 s after all closed", "MiB"),
        Row::new("burst: inspected sessions, growth kept", "share"),
    ]
}

/// Memory after a burst of `plan.sessions` inspected TLS sessions (each after one request),
/// held at once, then closed.
async fn session_burst(
    plan: &Plan,
    egressd: &peers::Peer,
    client: &tokio_rustls::TlsConnector,
    port: u16,
    rows: &mut [Row; 4],
) {
    let settle = Duration::from_millis(500);
    // The first session mints the leaf and fills the caches: baseline, not burst.
    drop(tls::open_idle_sessions(egressd, client, port, 1).await);
    tokio::time::sleep(settle).await;
    let before = egressd.rss_mib();
    let sessions = tls::open_idle_sessions(egressd, client, port, plan.sessions).await;
    tokio::time::sleep(settle).await;
    let peak = egressd.rss_mib();
    let complete = sessions.len() == plan.sessions;
    drop(sessions);
    tokio::time::sleep(AFTER_BURST).await;
    let after = egressd.rss_mib();
    let name = egressd.name;
    rows[0].set(name, if complete { peak } else { 0.0 });
    rows[1].set(name, (peak - before) * 1024.0 / plan.sessions.max(1) as f64);
    rows[2].set(name, after);
    rows[3].set(name, kept(before, peak, after));
}

/// Total PSS of many idle instances, default and with `--threads 0`.
fn instances(
    plan: &Plan,
    builds: &[&peers::Build],
    upstream: std::net::SocketAddr,
    report: &mut Report,
) {
    for (label, extra) in [
        ("default", &[][..]),
        ("--threads 0", &["--threads", "0"][..]),
    ] {
        let mut row = Row::new(
            &format!("{} idle instances, total PSS ({label})", plan.instances),
            "MiB",
        );
        for build in builds {
            let pss = peers::idle_instances_pss_mib(build, plan.instances, upstream, extra);
            row.set(build.name, pss.unwrap_or(0.0));
        }
        report.push(row);
    }
}

/// What a feature costs: egressd's CPU per HTTP request `with` it over the same `without` it
/// (the credential check against `--no-proxy-credential`, counting metrics against no
/// `--metrics-listen`), measured alternately in this run.
async fn cpu_ratio(
    what: &str,
    plan: &Plan,
    with: &peers::Peer,
    without: &peers::Peer,
    origin: std::net::SocketAddr,
    concurrency: usize,
) -> Row {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        for (peer, samples) in [(with, &mut on), (without, &mut off)] {
            let cpu = peer.cpu_secs();
            let s = load::http(peer.via(), origin, concurrency, plan.duration).await;
            if s.errors <= s.ops {
                samples.push(peer.cpu_us_per_op(cpu, s.ops));
            }
        }
    }
    Row::new(what, "ratio").egressd(median(&on) / median(&off))
}

/// The direct path, then each proxy: who a load is measured through.
/// The contender name of egressd's SOCKS5 listener in a row's values (not a table column: its
/// figures get rows of their own, [`socks_rows`]).
const SOCKS: &str = "egressd socks";

/// From a CONNECT row that also holds the SOCKS5 listener's figure: the SOCKS5 row (egressd's
/// column is the SOCKS figure, beside the direct path) and the same-run ratio SOCKS5 / CONNECT.
fn socks_rows(connect: &Row, name: &str, unit: &'static str) -> Vec<Row> {
    let (Some(socks), Some(via_connect)) = (connect.get(SOCKS), connect.get("egressd")) else {
        return Vec::new();
    };
    let mut row = Row::new(name, unit).egressd(socks);
    if let Some(direct) = connect.get("direct") {
        row.set("direct", direct);
    }
    let ratio = Row::new(&format!("{name}: SOCKS5 / CONNECT"), "x").egressd(socks / via_connect);
    vec![row, ratio]
}

fn contenders<'a>(proxies: &'a [&'a peers::Peer]) -> impl Iterator<Item = (&'a str, Via)> + 'a {
    std::iter::once(("direct", Via::Direct)).chain(proxies.iter().map(|p| (p.name, p.via())))
}

/// Sets row `i` of `rows`, for each contender, to the median of column `i` of its samples
/// (NaN: not applicable, left empty).
fn set_medians<const N: usize>(rows: &mut [Row], samples: &[(&str, Vec<[f64; N]>)]) {
    for (name, values) in samples {
        for (i, row) in rows.iter_mut().enumerate() {
            let value = median(&values.iter().map(|v| v[i]).collect::<Vec<_>>());
            if !value.is_nan() {
                row.set(name, value);
            }
        }
    }
}

fn push<'a, const N: usize>(
    samples: &mut Vec<(&'a str, Vec<[f64; N]>)>,
    name: &'a str,
    value: [f64; N],
) {
    match samples.iter_mut().find(|(n, _)| *n == name) {
        Some((_, values)) => values.push(value),
        None => samples.push((name, vec![value])),
    }
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
