//! `egressd pf`, `egressd nft`, `egressd sbpl`: host firewall rules from the policy. The rules
//! themselves are the `pf` crate's; this module resolves the user, reads the readiness file and
//! writes the output.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, anyhow};
use pf::{BlockPolicy, Cgroup, Icmp, Mode, Options, Plan, SandboxUser, SidecarPort, UidRange};

use crate::cli::{
    BlockPolicyArg, FirewallArgs, FirewallMode, LoopbackArg, NftArgs, PfArgs, SbplArgs, SidecarArgs,
};
use crate::exit::{Exit, Failure};
use crate::load;

pub fn pf(args: &PfArgs) -> Result<Exit, Failure> {
    pf::pf::check_anchor(&args.anchor).map_err(Failure::bad_input)?;
    let plan = plan(&args.common, None, args.common.block_icmp)?;
    emit(
        &pf::pf::render(&plan, &args.anchor),
        args.common.output.as_deref(),
    )
}

pub fn nft(args: &NftArgs) -> Result<Exit, Failure> {
    let cgroup = args
        .cgroup
        .as_deref()
        .map(Cgroup::new)
        .transpose()
        .map_err(Failure::bad_input)?;
    if args.common.block_icmp {
        // Kept so that existing provisioning scripts run; the rule it asked for is the default.
        eprintln!(
            "egressd: --block-icmp is deprecated for nft and does nothing: the user's ICMP is refused by default (--allow-icmp opens it)"
        );
    }
    let plan = plan(&args.common, cgroup.clone(), false)?;
    let table = match (&args.table, &cgroup) {
        (Some(table), _) => table.clone(),
        (None, Some(cgroup)) => {
            pf::nft::default_cgroup_table(plan.uid, cgroup).map_err(Failure::bad_input)?
        }
        (None, None) => pf::nft::default_table(plan.uid),
    };
    pf::nft::check_table(&table).map_err(Failure::bad_input)?;
    emit(
        &pf::nft::render(&plan, &table),
        args.common.output.as_deref(),
    )
}

pub fn sbpl(args: &SbplArgs) -> Result<Exit, Failure> {
    let ports = sidecar_ports(&args.sidecar)?;
    let proxy = ports.iter().find(|p| !p.udp).map(|p| p.port);
    let dns = ports.iter().find(|p| p.udp).map(|p| p.port);
    // --allow-loopback (shared with pf/nft) says what --loopback open, the default, says.
    let loopback = match args.loopback {
        LoopbackArg::Open => pf::sbpl::Loopback::Open,
        LoopbackArg::Sidecar => pf::sbpl::Loopback::SidecarOnly,
    };
    let unix_sockets = if args.allow_unix_socket.is_empty() {
        pf::sbpl::UnixSockets::All
    } else {
        pf::sbpl::UnixSockets::under(args.allow_unix_socket.clone()).map_err(Failure::bad_input)?
    };
    let text = pf::sbpl::render(&pf::sbpl::Section {
        generator: generator(),
        proxy_port: proxy,
        dns_port: dns,
        loopback,
        deny_loopback: args.deny_loopback_port.clone(),
        unix_sockets,
    })
    .map_err(Failure::bad_input)?;
    emit(&text, args.output.as_deref())
}

fn generator() -> String {
    format!("egressd {}", env!("CARGO_PKG_VERSION"))
}

/// The plan for the common flags; `host_icmp_echo` is pf's `--block-icmp` (nft's is a no-op).
fn plan(
    args: &FirewallArgs,
    cgroup: Option<Cgroup>,
    host_icmp_echo: bool,
) -> Result<Plan, Failure> {
    let policy = load::policy(args.policy.as_deref())?;
    let range = if args.danger_allow_system_uid {
        UidRange::DangerAny
    } else if args.service_user {
        UidRange::Service
    } else {
        UidRange::Regular
    };
    let user = resolve_user(&args.user, range)?;
    let has_ports = args.sidecar.proxy_port.is_some()
        || args.sidecar.dns_port.is_some()
        || args.sidecar.from_ready.is_some();
    let mode = match args.mode {
        FirewallMode::Lan | FirewallMode::LoopbackOnly if has_ports => {
            return Err(Failure::bad_input(anyhow!(
                "sidecar ports only apply to --mode sidecar-only"
            )));
        }
        FirewallMode::Lan => Mode::Lan,
        FirewallMode::LoopbackOnly => Mode::LoopbackOnly,
        FirewallMode::SidecarOnly => Mode::SidecarOnly {
            ports: sidecar_ports(&args.sidecar)?,
            allow_loopback: args.sidecar.allow_loopback,
        },
    };
    let options = Options {
        user,
        mode,
        block: match args.block_policy {
            BlockPolicyArg::Return => BlockPolicy::Return,
            BlockPolicyArg::Drop => BlockPolicy::Drop,
        },
        cgroup,
        deny_loopback: args.deny_loopback_port.clone(),
        icmp: if args.allow_icmp {
            Icmp::Open
        } else {
            Icmp::Closed
        },
        block_icmp: host_icmp_echo,
        generator: generator(),
    };
    Plan::new(&policy, &options).map_err(Failure::bad_input)
}

/// A numeric uid as given, or a name resolved through the system's user database.
fn resolve_user(text: &str, range: UidRange) -> Result<SandboxUser, Failure> {
    if let Ok(uid) = text.parse::<u32>() {
        return SandboxUser::new(uid, None, range).map_err(Failure::bad_input);
    }
    let uid = lookup_uid(text)?;
    SandboxUser::new(uid, Some(text.to_owned()), range).map_err(Failure::bad_input)
}

#[cfg(unix)]
fn lookup_uid(name: &str) -> Result<u32, Failure> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        Ok(None) => Err(Failure::bad_input(anyhow!(
            "unknown user {name:?}: give an existing user name or a numeric uid"
        ))),
        Err(e) => Err(Failure::bad_input(anyhow!(
            "cannot look up user {name:?}: {e}"
        ))),
    }
}

#[cfg(not(unix))]
fn lookup_uid(name: &str) -> Result<u32, Failure> {
    Err(Failure::bad_input(anyhow!(
        "user names need a Unix system; give a numeric uid instead of {name:?}"
    )))
}

/// The sidecar's listeners from flags or a readiness file.
fn sidecar_ports(args: &SidecarArgs) -> Result<Vec<SidecarPort>, Failure> {
    let Some(path) = &args.from_ready else {
        let mut ports = Vec::new();
        if let Some(port) = args.proxy_port {
            ports.push(SidecarPort {
                ip: None,
                port,
                udp: false,
            });
        }
        if let Some(port) = args.dns_port {
            ports.push(SidecarPort {
                ip: None,
                port,
                udp: true,
            });
        }
        return Ok(ports);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read readiness file {}", path.display()))
        .map_err(Failure::bad_input)?;
    let ready: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a readiness line (JSON)", path.display()))
        .map_err(Failure::bad_input)?;
    let addr = |key: &str| -> Result<Option<SocketAddr>, Failure> {
        match ready.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(value) => value
                .as_str()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    Failure::bad_input(anyhow!(
                        "{}: \"{key}\" is not an IP:PORT address",
                        path.display()
                    ))
                }),
        }
    };
    let mut ports = Vec::new();
    if let Some(proxy) = addr("proxy")? {
        ports.push(SidecarPort {
            ip: Some(proxy.ip()),
            port: proxy.port(),
            udp: false,
        });
    }
    if let Some(dns) = addr("dns")? {
        ports.push(SidecarPort {
            ip: Some(dns.ip()),
            port: dns.port(),
            udp: true,
        });
    }
    if ports.is_empty() {
        return Err(Failure::bad_input(anyhow!(
            "{} names no proxy or DNS address",
            path.display()
        )));
    }
    Ok(ports)
}

fn emit(text: &str, output: Option<&Path>) -> Result<Exit, Failure> {
    match output {
        None => print!("{text}"),
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(Failure::bad_input)?,
    }
    Ok(Exit::Ok)
}
