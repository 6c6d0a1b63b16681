//! Jobs that share one user stay apart (docs/pf.md, "Many jobs under one service user"): each job
//! in its own cgroup with its own egressd and its own nft table (`egressd nft --cgroup
//! --deny-loopback-port`), and each job in its own PID namespace so that a sibling's environment,
//! where its proxy credential lives, is out of reach.

use std::net::SocketAddr;

use crate::util::*;

/// The jobs' one uid, and the LAN-like and public addresses put on the namespace's `lo`.
const JOB_UID: u32 = 60125;
const LAN4: &str = "10.99.0.1";
const LAN6: &str = "fd00::1";
const PUBLIC4: &str = "11.0.0.7";
const JOBS: usize = 4;

/// Four jobs of one uid, each in its own cgroup with its own egressd: each reaches its own proxy
/// and DNS stub (UDP and TCP) and a loopback test server; none reaches another job's proxy or
/// stub, nor the LAN or a public address (TCP, UDP and ICMP echo, IPv4 and IPv6). Removing and
/// loading one job's table leaves the others' reach as it was.
#[test]
#[ignore = "needs root, network and mount namespaces, cgroup v2, nft, setpriv and ping: run by .ci/run"]
fn four_jobs_of_one_user_reach_their_own_sidecars_and_nothing_of_each_other() {
    in_netns_with_cgroup2(
        "jobs::four_jobs_of_one_user_reach_their_own_sidecars_and_nothing_of_each_other",
        &[
            &format!("{LAN4}/32"),
            &format!("{LAN6}/128"),
            &format!("{PUBLIC4}/32"),
        ],
        four_jobs,
    );
}

/// One job's egressd and the addresses a job probes it at.
struct Job {
    _sidecar: Sidecar,
    proxy: SocketAddr,
    dns: SocketAddr,
}

impl Job {
    fn start() -> Self {
        let sidecar = Sidecar::start(&[]);
        let proxy = sidecar.proxy();
        let dns = sidecar.ready["dns"].as_str().unwrap().parse().unwrap();
        Self {
            _sidecar: sidecar,
            proxy,
            dns,
        }
    }
}

fn four_jobs() {
    let prober = Prober::new();
    let cgroups = TestCgroups::make(&["job1", "job2", "job3", "job4"]);
    let jobs: Vec<Job> = (0..JOBS).map(|_| Job::start()).collect();
    let server = Origin::start(Behaviour::Answer);
    let lan = |ip: &str, port: u16| -> SocketAddr {
        if ip.contains(':') {
            format!("[{ip}]:{port}").parse().unwrap()
        } else {
            format!("{ip}:{port}").parse().unwrap()
        }
    };
    let lan_tcp = [
        Origin::bind(lan(LAN4, 8080), Behaviour::Answer),
        Origin::bind(lan(LAN6, 8080), Behaviour::Answer),
        Origin::bind(lan(PUBLIC4, 8080), Behaviour::Answer),
    ];
    let lan_udp = [
        UdpEcho::bind(lan(LAN4, 8080)),
        UdpEcho::bind(lan(LAN6, 8080)),
    ];

    let probe = |job: usize, spec: String| -> String {
        let wrapper = cgroups.enter(job);
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        prober.run(JOB_UID, &wrapper, &spec)
    };
    // What job `i` reaches, as (what, outcome).
    let reach = |i: usize| -> Vec<(String, String)> {
        let mut seen = Vec::new();
        for (j, other) in jobs.iter().enumerate() {
            let whose = if i == j {
                "own".to_owned()
            } else {
                format!("job {}'s", j + 1)
            };
            seen.push((
                format!("{whose} proxy"),
                probe(i, format!("tcp {}", other.proxy)),
            ));
            seen.push((
                format!("{whose} stub, UDP"),
                probe(i, format!("dns {}", other.dns)),
            ));
            seen.push((
                format!("{whose} stub, TCP"),
                probe(i, format!("tcp {}", other.dns)),
            ));
        }
        seen.push((
            "test server".into(),
            probe(i, format!("tcp {}", server.addr)),
        ));
        for listener in &lan_tcp {
            seen.push((
                format!("TCP {}", listener.addr),
                probe(i, format!("tcp {}", listener.addr)),
            ));
        }
        for echo in &lan_udp {
            seen.push((
                format!("UDP {}", echo.addr),
                probe(i, format!("udp {}", echo.addr)),
            ));
        }
        for ip in [LAN4, LAN6, PUBLIC4] {
            seen.push((format!("ICMP {ip}"), probe(i, format!("icmp {ip}"))));
        }
        seen
    };
    // What a fenced job must see: its own sidecar and the test server, nothing else.
    let fenced = |seen: &[(String, String)]| -> Vec<(String, String)> {
        seen.iter()
            .map(|(what, _)| {
                let open = what.starts_with("own") || what == "test server";
                let outcome = if open { "ok" } else { "refused" };
                (what.clone(), outcome.to_owned())
            })
            .collect()
    };

    // Before any rules, a job reaches everything: the probes can tell "ok" from "refused".
    let open: Vec<(String, String)> = reach(0);
    assert!(open.iter().all(|(_, outcome)| outcome == "ok"), "{open:#?}");
    let seen_before: Vec<usize> = lan_tcp.iter().map(|l| l.connections.get()).collect();
    let datagrams_before: Vec<usize> = lan_udp.iter().map(|e| e.datagrams.get()).collect();

    let rules = |i: usize| -> Vec<String> {
        let mut args = vec![
            "--user".to_owned(),
            JOB_UID.to_string(),
            "--mode".into(),
            "loopback-only".into(),
            "--cgroup".into(),
            cgroups.relative[i].clone(),
        ];
        for (j, other) in jobs.iter().enumerate() {
            if j != i {
                for port in [other.proxy.port(), other.dns.port()] {
                    args.push("--deny-loopback-port".into());
                    args.push(port.to_string());
                }
            }
        }
        args
    };
    let load = |i: usize| {
        let args = rules(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        load_nft(&args);
    };
    for i in 0..JOBS {
        load(i);
    }
    let all: Vec<Vec<(String, String)>> = (0..JOBS).map(reach).collect();
    for (i, seen) in all.iter().enumerate() {
        assert_eq!(seen, &fenced(seen), "job {} with every job's rules", i + 1);
    }
    assert_eq!(
        lan_tcp
            .iter()
            .map(|l| l.connections.get())
            .collect::<Vec<_>>(),
        seen_before,
        "a LAN or public listener saw a fenced job"
    );
    assert_eq!(
        lan_udp
            .iter()
            .map(|e| e.datagrams.get())
            .collect::<Vec<_>>(),
        datagrams_before
    );

    // Job 2's table goes: job 2 is open again, the others' reach is unchanged.
    let table = nft_table(&cgroups.relative[1]);
    nft(&["delete", "table", "inet", &table]);
    assert_eq!(
        probe(1, format!("tcp {}", jobs[0].proxy)),
        "ok",
        "job 2 unfenced"
    );
    for i in [0, 2, 3] {
        assert_eq!(reach(i), all[i], "job {} after job 2's rules went", i + 1);
    }
    // And comes back: job 2 fenced as before, the others still unchanged.
    load(1);
    for (i, before) in all.iter().enumerate() {
        assert_eq!(
            &reach(i),
            before,
            "job {} after job 2's rules came back",
            i + 1
        );
    }
    drop(jobs);
}

fn nft_table(cgroup: &str) -> String {
    let path: String = cgroup
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("egressd_{JOB_UID}_{path}")
}

fn nft(args: &[&str]) {
    let out = std::process::Command::new("nft")
        .args(args)
        .output()
        .expect("nft (nftables) is installed");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn load_nft(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.nft");
    let mut full = vec!["nft", "--service-user"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", file.to_str().unwrap()]);
    let r = run(&full);
    assert_eq!(r.code, 0, "{full:?}: {r:?}");
    nft(&["-f", file.to_str().unwrap()]);
}

/// The credential of a job lives in its environment (the readiness line's proxy URL). A sibling
/// of the same uid reads it from /proc/PID/environ; a sibling in its own PID namespace with its
/// own /proc (docs/pf.md's recipe) sees no such process.
#[test]
#[ignore = "needs root, util-linux unshare and setpriv: run by .ci/run"]
fn a_sibling_reads_the_credential_unless_it_has_its_own_pid_namespace() {
    let secret = "sibling-credential-0123456789abcdef";
    let mut job_b = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            &JOB_UID.to_string(),
            "--regid",
            &JOB_UID.to_string(),
            "--clear-groups",
            "sleep",
            "60",
        ])
        .env_clear()
        .env(
            "HTTP_PROXY",
            format!("http://egressd:{secret}@127.0.0.1:3128"),
        )
        .spawn()
        .expect("setpriv (util-linux) runs");
    let spec = format!("environ {} {secret}", job_b.id());
    let prober = Prober::new();
    // Wait until job B has exec'd sleep (its environment is the one it was given).
    let deadline = std::time::Instant::now() + PATIENCE;
    let shared = loop {
        let outcome = prober.run(JOB_UID, &[], &spec);
        // Until setpriv has given the process to the uid ("refused" before).
        if outcome == "ok" || std::time::Instant::now() > deadline {
            break outcome;
        }
        std::thread::yield_now();
    };
    let own_namespace = prober.run(
        JOB_UID,
        &["unshare", "--pid", "--fork", "--mount-proc"],
        &spec,
    );
    let _ = job_b.kill();
    let _ = job_b.wait();
    assert_eq!(
        shared, "ok",
        "without a PID namespace, job A reads job B's credential"
    );
    assert_eq!(
        own_namespace, "missing",
        "in its own PID namespace with its own /proc, job A sees no job B"
    );
}
