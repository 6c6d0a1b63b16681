//! `egressd run`: start the sidecar for one sandbox and keep the launcher contract
//! (docs/launcher.md): fail closed before readiness, one readiness line, drain on SIGTERM, reload
//! on SIGHUP, die with the launcher on request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use dnsstub::{Stub, StubConfig};
use policy::HeaderTemplate;
use proxy::{Limits, ParentProxy, Proxy, ProxyConfig};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::exit::{Exit, Failure};
use crate::signals::{Request, Signals};
use crate::{load, logging};

pub fn run(args: &RunArgs) -> Result<Exit, Failure> {
    let policy = load::policy(args.policy.as_deref())?;
    let config = proxy_config(args)?;
    for (flag, addr, used) in [
        ("--proxy-listen", args.proxy_listen, true),
        ("--dns-listen", args.dns_listen, !args.no_dns),
    ] {
        if used && !addr.ip().is_loopback() && !args.danger_listen_non_loopback {
            return Err(Failure::bad_input(anyhow!(
                "{flag} {addr} is not a loopback address; add --danger-listen-non-loopback if you mean it"
            )));
        }
    }
    // Held until `run` returns: dropping it flushes the log and audit writers.
    let _log_guards = logging::init(args.log_format, args.log_level, args.audit_log.as_deref())
        .map_err(Failure::start)?;
    let runtime = match args.threads {
        Some(0) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .context("cannot start the async runtime")
    .map_err(Failure::start)?;
    runtime.block_on(serve(args, policy, config))
}

fn proxy_config(args: &RunArgs) -> Result<ProxyConfig, Failure> {
    let extra_headers = args
        .headers
        .iter()
        .filter(|h| !h.trim().is_empty())
        .map(|h| {
            let (name, value) = h.split_once(':').ok_or_else(|| {
                Failure::bad_input(anyhow!("--header {h:?}: write 'Name: value'"))
            })?;
            HeaderTemplate::parse(name.trim(), value.trim())
                .map_err(|e| Failure::bad_input(anyhow!("--header {h:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let parent = match args.parent_proxy {
        None => None,
        Some(addr) => Some(ParentProxy {
            addr,
            authorization: match &args.parent_proxy_auth {
                None => None,
                Some(value) => Some(http::HeaderValue::from_str(value).map_err(|_| {
                    Failure::bad_input(anyhow!("--parent-proxy-auth is not a valid header value"))
                })?),
            },
        }),
    };
    let l = &args.limits;
    let limits = Limits {
        connect_timeout: l.connect_timeout,
        dns_timeout: l.dns_timeout,
        tunnel_idle_timeout: l.tunnel_idle_timeout,
        header_read_timeout: l.header_read_timeout,
        max_header_bytes: l.max_header_bytes as usize,
        max_connections: l.max_connections as usize,
        response_timeout: l.response_timeout,
        ..Limits::default()
    };
    Ok(ProxyConfig {
        sandbox_id: args.sandbox_id.clone(),
        extra_headers,
        limits,
        parent,
    })
}

async fn serve(
    args: &RunArgs,
    policy: policy::Policy,
    config: ProxyConfig,
) -> Result<Exit, Failure> {
    let ready_policy = PolicyInfo {
        origin: policy.origin().to_owned(),
        sha256: policy.digest().to_owned(),
    };
    let stub_config = StubConfig {
        sandbox_id: args.sandbox_id.clone(),
        ..StubConfig::default()
    };
    let stub = (!args.no_dns).then(|| {
        let system = if policy.dns().upstreams.is_empty() {
            dnsstub::system_upstreams()
        } else {
            Vec::new()
        };
        Stub::new(policy.clone(), stub_config, system)
    });
    let proxy = Proxy::new(policy, config).map_err(Failure::start)?;
    let shutdown = CancellationToken::new();
    let mut listeners = JoinSet::new();

    let tcp = tokio::net::TcpListener::bind(args.proxy_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.proxy_listen))
        .map_err(Failure::start)?;
    let proxy_addr = tcp
        .local_addr()
        .context("cannot read the bound address")
        .map_err(Failure::start)?;
    {
        let (proxy, shutdown) = (proxy.clone(), shutdown.clone());
        listeners.spawn(async move {
            proxy
                .serve(tcp, shutdown)
                .await
                .map_err(|e| anyhow!("proxy listener: {e}"))
        });
    }
    let unix_path = bind_unix(args, &proxy, &shutdown, &mut listeners)?;
    let dns_addr = match &stub {
        Some(stub) => Some(bind_dns(args.dns_listen, stub, &shutdown, &mut listeners).await?),
        None => None,
    };
    let mut signals = Signals::install()
        .context("cannot install signal handlers")
        .map_err(Failure::start)?;

    let ready = Ready::new(
        &args.sandbox_id,
        proxy_addr,
        dns_addr,
        unix_path.as_deref(),
        ready_policy,
    );
    announce(&ready, args.ready_file.as_deref())?;
    tracing::info!(proxy = %proxy_addr, dns = ?dns_addr, sandbox_id = %args.sandbox_id, "ready");

    let stdin_eof = wait_for_stdin_eof(args.exit_on_stdin_eof);
    tokio::pin!(stdin_eof);
    let outcome = loop {
        tokio::select! {
            request = signals.next() => match request {
                Request::Shutdown => break Ok(()),
                Request::Reload => reload(&proxy, stub.as_ref(), args.policy.as_deref()),
            },
            ended = listeners.join_next() => {
                let error = match ended {
                    Some(Ok(Err(e))) => e,
                    Some(Err(e)) => anyhow!("listener task failed: {e}"),
                    Some(Ok(Ok(()))) | None => anyhow!("a listener stopped"),
                };
                break Err(error);
            }
            () = &mut stdin_eof => {
                tracing::info!("stdin closed; the launcher is gone; shutting down");
                break Ok(());
            }
        }
    };
    shutdown.cancel();
    // The accept loops return at once when cancelled; waiting for them means every listening
    // socket is closed before draining starts, so no connection is accepted after this point.
    while listeners.join_next().await.is_some() {}
    cleanup(unix_path.as_deref(), args.ready_file.as_deref());
    if let Err(error) = outcome {
        tracing::error!(%error, "exiting");
        return Err(Failure {
            code: Exit::RuntimeFailed,
            error,
        });
    }
    let tasks = proxy.tasks();
    tasks.close();
    tracing::info!(open = tasks.len(), deadline = ?args.drain_timeout, "draining");
    if tokio::time::timeout(args.drain_timeout, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tasks.len(),
            "drain deadline passed; closing what is left"
        );
    }
    Ok(Exit::Ok)
}

#[cfg(unix)]
fn bind_unix(
    args: &RunArgs,
    proxy: &Proxy,
    shutdown: &CancellationToken,
    listeners: &mut JoinSet<anyhow::Result<()>>,
) -> Result<Option<PathBuf>, Failure> {
    let Some(path) = &args.proxy_unix else {
        return Ok(None);
    };
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on unix socket {}", path.display()))
        .map_err(Failure::start)?;
    let (proxy, shutdown) = (proxy.clone(), shutdown.clone());
    listeners.spawn(async move {
        proxy
            .serve(listener, shutdown)
            .await
            .map_err(|e| anyhow!("unix listener: {e}"))
    });
    Ok(Some(path.clone()))
}

#[cfg(not(unix))]
fn bind_unix(
    args: &RunArgs,
    _: &Proxy,
    _: &CancellationToken,
    _: &mut JoinSet<anyhow::Result<()>>,
) -> Result<Option<PathBuf>, Failure> {
    match &args.proxy_unix {
        None => Ok(None),
        Some(_) => Err(Failure::bad_input(anyhow!(
            "--proxy-unix needs a Unix system"
        ))),
    }
}

/// Binds the stub's UDP socket and a TCP listener on the same port, both exclusively. With port 0,
/// the kernel's UDP port may be taken for TCP; a few fresh tries settle it. One receive loop per
/// core shares the UDP socket, so queries are answered on every core. (`SO_REUSEPORT` would do the
/// same with one socket per core, but a port-0 bind with it may join another same-user process's
/// group: another sandbox's stub could receive this sandbox's queries.)
async fn bind_dns(
    addr: SocketAddr,
    stub: &Stub,
    shutdown: &CancellationToken,
    listeners: &mut JoinSet<anyhow::Result<()>>,
) -> Result<SocketAddr, Failure> {
    let loops = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut last = None;
    for _ in 0..10 {
        let udp = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (DNS, UDP)"))
            .map_err(Failure::start)?;
        let bound = udp
            .local_addr()
            .context("cannot read the bound DNS address")
            .map_err(Failure::start)?;
        let tcp = match tokio::net::TcpListener::bind(bound).await {
            Ok(tcp) => tcp,
            Err(e) if addr.port() == 0 => {
                last = Some(e);
                continue;
            }
            Err(e) => {
                return Err(Failure::start(anyhow!(
                    "cannot listen on {bound} (DNS, TCP): {e}"
                )));
            }
        };
        let udp = std::sync::Arc::new(udp);
        for _ in 0..loops {
            let (s, stop, udp) = (stub.clone(), shutdown.clone(), udp.clone());
            listeners.spawn(async move {
                s.serve_udp(udp, stop)
                    .await
                    .map_err(|e| anyhow!("DNS UDP listener: {e}"))
            });
        }
        let (s, stop) = (stub.clone(), shutdown.clone());
        listeners.spawn(async move {
            s.serve_tcp(tcp, stop)
                .await
                .map_err(|e| anyhow!("DNS TCP listener: {e}"))
        });
        return Ok(bound);
    }
    Err(Failure::start(anyhow!(
        "cannot find a port free for both DNS UDP and TCP on {addr}: {last:?}"
    )))
}

/// Rereads the policy file; a bad one is logged and the current policy stays.
fn reload(proxy: &Proxy, stub: Option<&Stub>, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::info!("SIGHUP: running the built-in policy; nothing to reload");
        return;
    };
    match load::policy(Some(path)) {
        Err(failure) => {
            tracing::error!(error = %format!("{:#}", failure.error), "SIGHUP: policy reload failed; keeping the current policy");
        }
        Ok(policy) => {
            let digest = policy.digest().to_owned();
            let for_stub = policy.clone();
            match proxy.reload(policy) {
                Ok(()) => {
                    if let Some(stub) = stub {
                        stub.reload(for_stub);
                    }
                    tracing::info!(policy = %path.display(), sha256 = %digest, "SIGHUP: policy reloaded")
                }
                Err(error) => {
                    tracing::error!(%error, "SIGHUP: policy reload failed; keeping the current policy")
                }
            }
        }
    }
}

/// Resolves when stdin reaches end of file, if asked to watch it; never otherwise.
async fn wait_for_stdin_eof(enabled: bool) {
    if !enabled {
        return std::future::pending().await;
    }
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn cleanup(unix_path: Option<&Path>, ready_file: Option<&Path>) {
    for path in unix_path.into_iter().chain(ready_file) {
        if let Err(error) = std::fs::remove_file(path) {
            tracing::debug!(path = %path.display(), %error, "could not remove at exit");
        }
    }
}

/// The readiness line: the launcher contract's one JSON object.
#[derive(Serialize)]
struct Ready {
    event: &'static str,
    version: &'static str,
    pid: u32,
    sandbox_id: String,
    proxy: String,
    proxy_url: String,
    proxy_unix: Option<String>,
    dns: Option<String>,
    policy: PolicyInfo,
    env: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct PolicyInfo {
    origin: String,
    sha256: String,
}

impl Ready {
    fn new(
        sandbox_id: &str,
        proxy: SocketAddr,
        dns: Option<SocketAddr>,
        unix: Option<&Path>,
        policy: PolicyInfo,
    ) -> Self {
        let url = format!("http://{proxy}");
        let no_proxy = "localhost,127.0.0.1,::1".to_owned();
        let env = BTreeMap::from([
            ("HTTP_PROXY", url.clone()),
            ("HTTPS_PROXY", url.clone()),
            ("http_proxy", url.clone()),
            ("https_proxy", url.clone()),
            ("NO_PROXY", no_proxy.clone()),
            ("no_proxy", no_proxy),
        ]);
        Self {
            event: "ready",
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            sandbox_id: sandbox_id.to_owned(),
            proxy: proxy.to_string(),
            proxy_url: url,
            proxy_unix: unix.map(|p| p.display().to_string()),
            dns: dns.map(|a| a.to_string()),
            policy,
            env,
        }
    }
}

/// Prints the readiness line and writes the ready file (aside, then renamed into place).
fn announce(ready: &Ready, ready_file: Option<&Path>) -> Result<(), Failure> {
    let line = serde_json::to_string(ready)
        .context("cannot encode the readiness line")
        .map_err(Failure::start)?;
    if let Some(path) = ready_file {
        let mut aside = path.as_os_str().to_owned();
        aside.push(".tmp");
        let aside = PathBuf::from(aside);
        std::fs::write(&aside, format!("{line}\n"))
            .and_then(|()| std::fs::rename(&aside, path))
            .with_context(|| format!("cannot write ready file {}", path.display()))
            .map_err(Failure::start)?;
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write the readiness line")
        .map_err(Failure::start)?;
    Ok(())
}
