//! The network section of a macOS `sandbox-exec` (SBPL) profile: outbound traffic only to
//! loopback (by default) or only to the sidecar's ports, no way to the system resolver, and no
//! reading of other processes' arguments and environment (where a sibling job's proxy
//! credential lives).
//!
//! SBPL is evaluated last-match-wins, so the section is meant to be appended at the end of a
//! profile (docs/launcher.md shows how), and it is written in the order that makes it hold:
//!
//! 1. deny every outbound connection and datagram (ICMP included);
//! 2. allow loopback (unless [`Loopback::SidecarOnly`]), then deny loopback port 53 again (a DNS
//!    server there would resolve for the job), then the other jobs' egressd ports
//!    (`--deny-loopback-port`);
//! 3. allow Unix-socket connects: every socket, or only under the launcher's paths
//!    (`--allow-unix-socket`); with every socket, deny again the well-known container-daemon and
//!    VM sockets ([`DAEMON_SOCKETS`]): each is a way out of every fence;
//! 4. allow the sidecar's ports (after 2, so a DNS stub on port 53 stays reachable);
//! 5. deny other processes' arguments and environment (`kern.procargs*`) and process details;
//! 6. deny the system resolver: its Unix socket, then every Mach service it publishes. Nothing
//!    after these lines allows anything, so no earlier or broader allow can reopen them.
//!
//! What each line closes, and the source for it, is in docs/sbpl.md. Trust services that TLS
//! certificate verification needs (`com.apple.trustd.agent` and the like) are never denied.
//! A profile cannot express CIDRs; pair it with the pf anchor.

use std::fmt::Write;

/// The socket of macOS's system resolver (the `dns_sd` client library's `MDNS_UDS_SERVERPATH`,
/// `/var/run/mDNSResponder`, as the sandbox sees it after resolving the `/var` symlink).
pub const SYSTEM_RESOLVER_SOCKET: &str = "/private/var/run/mDNSResponder";

/// A Unix socket of a container daemon or VM manager that the section denies when it allows
/// every other socket (no `--allow-unix-socket`): whoever can talk to one can start a container
/// or VM with the host's network (`docker run --network host ...`), outside every fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonSocket {
    /// One path, exactly (`path-literal`).
    Literal {
        /// The socket's path.
        path: &'static str,
        /// Whose socket it is, as the comment on the generated line.
        what: &'static str,
    },
    /// Every path the regular expression matches (`regex`): a socket under any user's home
    /// directory, which the section cannot know.
    Regex {
        /// An SBPL (POSIX extended) regular expression on the socket's path.
        regex: &'static str,
        /// Whose socket it is, as the comment on the generated line.
        what: &'static str,
    },
}

/// The well-known container-daemon and VM sockets on macOS, in the order the section denies them
/// (docs/sbpl.md has where each comes from). `/var` is a symlink to `/private/var`: both
/// spellings are denied.
pub const DAEMON_SOCKETS: [DaemonSocket; 9] = [
    DaemonSocket::Literal {
        path: "/var/run/docker.sock",
        what: "Docker's system socket (Docker Desktop, OrbStack, Colima, podman-mac-helper link it here)",
    },
    DaemonSocket::Literal {
        path: "/private/var/run/docker.sock",
        what: "the same socket, as the sandbox sees /var",
    },
    DaemonSocket::Regex {
        regex: "^/.*/\\.docker/run/docker\\.sock$",
        what: "Docker Desktop's per-user socket (~/.docker/run/docker.sock)",
    },
    DaemonSocket::Regex {
        regex: "^/.*/\\.colima/.*docker\\.sock$",
        what: "Colima's Docker socket (~/.colima/PROFILE/docker.sock)",
    },
    DaemonSocket::Regex {
        regex: "^/.*/\\.orbstack/run/docker\\.sock$",
        what: "OrbStack's Docker socket (~/.orbstack/run/docker.sock)",
    },
    DaemonSocket::Regex {
        regex: "^/.*/\\.lima/.*sock$",
        what: "Lima's VM sockets (~/.lima/INSTANCE/sock/docker.sock, ha.sock, ssh.sock)",
    },
    DaemonSocket::Regex {
        regex: "^/.*/podman\\.sock$",
        what: "Podman's API socket (~/.local/share/containers/podman/machine/.../podman.sock)",
    },
    DaemonSocket::Regex {
        regex: "^/.*/podman-machine-[^/]*$",
        what: "Podman machine's API sockets ($TMPDIR/podman/podman-machine-default-api.sock)",
    },
    DaemonSocket::Regex {
        regex: "^/.*/\\.rd/docker\\.sock$",
        what: "Rancher Desktop's Docker socket (~/.rd/docker.sock)",
    },
];

/// A Mach service of the system resolver (mDNSResponder) that the section denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolverService {
    /// The bootstrap (global) name.
    pub name: &'static str,
    /// What it does for a client, as the comment on the generated line.
    pub what: &'static str,
}

/// Every Mach service mDNSResponder has published in its launchd plist since macOS 10.15,
/// in the order the section denies them (docs/sbpl.md has the source for each).
pub const RESOLVER_SERVICES: [ResolverService; 4] = [
    ResolverService {
        name: "com.apple.dnssd.service",
        what: "getaddrinfo over XPC: Network.framework, URLSession",
    },
    ResolverService {
        name: "com.apple.mDNSResponder.control",
        what: "mDNSResponder control: DNS proxy, record cache",
    },
    ResolverService {
        name: "com.apple.mDNSResponder.log_utility",
        what: "mDNSResponder state dump (cached names)",
    },
    ResolverService {
        name: "com.apple.mDNSResponder.dnsproxy",
        what: "DNS proxy control, mDNSResponder before 2559",
    },
];

/// What the job may reach on loopback besides the sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loopback {
    /// Every loopback port but 53: CI jobs start and call their own servers and databases.
    Open,
    /// Only the sidecar's ports.
    SidecarOnly,
}

/// Which Unix sockets the job may connect to (the system resolver's never).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnixSockets {
    /// Every socket but the system resolver's and the well-known container-daemon and VM
    /// sockets ([`DAEMON_SOCKETS`]): the job's own, and whatever else the host runs (a daemon
    /// socket at an unusual path included: docs/sbpl.md).
    All,
    /// Only sockets under these absolute paths (`--allow-unix-socket`, a subpath each).
    Under(Vec<String>),
}

impl UnixSockets {
    /// Checks each path: absolute, and nothing that would break out of an SBPL string.
    pub fn under(paths: Vec<String>) -> Result<Self, crate::Error> {
        for path in &paths {
            if !path.starts_with('/')
                || path
                    .chars()
                    .any(|c| c == '"' || c == '\\' || c.is_control())
            {
                return Err(crate::Error::UnixSocketPath(path.clone()));
            }
        }
        Ok(Self::Under(paths))
    }
}

/// Everything the section is made from.
#[derive(Clone, Debug)]
pub struct Section {
    /// Program and version for the header.
    pub generator: String,
    /// egressd's proxy port on loopback.
    pub proxy_port: Option<u16>,
    /// egressd's DNS stub port on loopback.
    pub dns_port: Option<u16>,
    /// What else on loopback the job may reach.
    pub loopback: Loopback,
    /// Loopback ports closed to the job (other jobs' egressd), with [`Loopback::Open`].
    pub deny_loopback: Vec<std::ops::RangeInclusive<u16>>,
    /// Which Unix sockets the job may connect to.
    pub unix_sockets: UnixSockets,
}

/// Renders the section.
pub fn render(section: &Section) -> Result<String, crate::Error> {
    let (proxy_port, dns_port) = (section.proxy_port, section.dns_port);
    if proxy_port.is_none() && dns_port.is_none() {
        return Err(crate::Error::NoSidecarPorts);
    }
    let deny = crate::merge_ranges(&section.deny_loopback);
    if let Some(own) = [proxy_port, dns_port]
        .into_iter()
        .flatten()
        .find(|p| deny.iter().any(|r| r.contains(p)))
    {
        return Err(crate::Error::DenyOwnPort(own));
    }
    let count: usize = deny.iter().map(|r| r.clone().count()).sum();
    if count > crate::MAX_SBPL_PORTS {
        return Err(crate::Error::TooManyPorts(count));
    }
    let mut out = header(section, &deny);
    rule(
        &mut out,
        "(deny network-outbound)",
        "every connection and datagram, ICMP and Unix sockets included",
    );
    if section.loopback == Loopback::Open {
        rule(
            &mut out,
            "(allow network-outbound (remote ip \"localhost:*\"))",
            "loopback: the job's own services",
        );
        rule(
            &mut out,
            "(deny network-outbound (remote ip \"localhost:53\"))",
            "but not a DNS server on loopback",
        );
        // With loopback closed but for egressd, the first line already refuses these.
        for port in deny.iter().flat_map(|r| r.clone()) {
            rule(
                &mut out,
                &format!("(deny network-outbound (remote ip \"localhost:{port}\"))"),
                "another job's egressd (--deny-loopback-port)",
            );
        }
    }
    unix_sockets(&mut out, &section.unix_sockets);
    sidecar(&mut out, proxy_port, dns_port);
    other_processes(&mut out);
    resolver(&mut out);
    Ok(out)
}

fn header(section: &Section, deny: &[std::ops::RangeInclusive<u16>]) -> String {
    let loopback = match section.loopback {
        Loopback::Open if deny.is_empty() => {
            "open but for port 53 (--loopback open, the default)".to_owned()
        }
        Loopback::Open => format!(
            "open but for port 53 and other jobs' egressd ports {} (--deny-loopback-port)",
            deny.iter()
                .map(|r| if r.start() == r.end() {
                    r.start().to_string()
                } else {
                    format!("{}-{}", r.start(), r.end())
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Loopback::SidecarOnly => "closed but for egressd (--loopback sidecar)".to_owned(),
    };
    let unix = match &section.unix_sockets {
        UnixSockets::All => {
            "every socket but the system resolver's and the well-known container-daemon and\n\
             ;;   VM sockets (no --allow-unix-socket: a daemon's socket at another path stays open,\n\
             ;;   docs/sbpl.md; --allow-unix-socket with the job's directories is recommended)"
                .to_owned()
        }
        UnixSockets::Under(paths) => format!(
            "only under {} (--allow-unix-socket), never the system resolver's",
            paths.join(", ")
        ),
    };
    format!(
        ";; egressd network section for sandbox-exec, generated by {}.\n\
         ;; Append it at the end of your profile, after (version 1): SBPL applies the last matching\n\
         ;; rule, so these lines override broader rules that come before them.\n\
         ;; Closes: every outbound connection and datagram (TCP, UDP, ICMP) but to loopback and\n\
         ;;   egressd; the system resolver (its socket and Mach services); reading other\n\
         ;;   processes' arguments and environment (kern.procargs*: how far macOS honours it\n\
         ;;   is unverified, docs/sbpl.md) and details (process-info*).\n\
         ;; Loopback: {loopback}.\n\
         ;; Unix sockets: {unix}.\n\
         ;; Why each line is here, and its source: docs/sbpl.md.\n",
        section.generator
    )
}

fn unix_sockets(out: &mut String, sockets: &UnixSockets) {
    match sockets {
        UnixSockets::All => {
            rule(
                out,
                "(allow network-outbound (remote unix-socket))",
                "Unix sockets: the job's own (the resolver's is denied below)",
            );
            out.push_str(
                ";; A container daemon's or VM's socket starts what no fence holds (docker run --network host).\n",
            );
            for socket in DAEMON_SOCKETS {
                match socket {
                    DaemonSocket::Literal { path, what } => rule(
                        out,
                        &format!(
                            "(deny network-outbound (remote unix-socket (path-literal \"{path}\")))"
                        ),
                        what,
                    ),
                    DaemonSocket::Regex { regex, what } => rule(
                        out,
                        &format!("(deny network-outbound (regex #\"{regex}\"))"),
                        what,
                    ),
                }
            }
        }
        UnixSockets::Under(paths) => {
            for path in paths {
                rule(
                    out,
                    &format!("(allow network-outbound (remote unix-socket (subpath \"{path}\")))"),
                    "Unix sockets under a path of the job's (--allow-unix-socket)",
                );
            }
        }
    }
}

/// Other processes' arguments and environment: a sibling job of the same user keeps its proxy
/// credential there. Denies only: nothing here can widen what the base profile allows.
fn other_processes(out: &mut String) {
    out.push_str(
        ";; Other processes' arguments and environment (a sibling job's proxy credential).\n",
    );
    rule(
        out,
        "(deny sysctl-read (sysctl-name-prefix \"kern.procargs\"))",
        "KERN_PROCARGS2: any process's argv and environment",
    );
    rule(
        out,
        "(deny process-info* (require-not (target self)))",
        "proc_pidinfo and kin on another process",
    );
}

fn sidecar(out: &mut String, proxy_port: Option<u16>, dns_port: Option<u16>) {
    if let Some(port) = proxy_port {
        rule(
            out,
            &format!("(allow network-outbound (remote tcp \"localhost:{port}\"))"),
            "egressd proxy",
        );
    }
    if let Some(port) = dns_port {
        rule(
            out,
            &format!("(allow network-outbound (remote udp \"localhost:{port}\"))"),
            "egressd DNS stub",
        );
        rule(
            out,
            &format!("(allow network-outbound (remote tcp \"localhost:{port}\"))"),
            "egressd DNS stub over TCP",
        );
    }
}

/// The system resolver's socket and Mach services, last: no allow follows them.
fn resolver(out: &mut String) {
    out.push_str(";; The system resolver answers any name; only egressd's DNS stub may resolve.\n");
    rule(
        out,
        &format!(
            "(deny network-outbound (remote unix-socket (path-literal \"{SYSTEM_RESOLVER_SOCKET}\")))"
        ),
        "dns_sd socket: getaddrinfo, DNSService*",
    );
    for service in RESOLVER_SERVICES {
        rule(
            out,
            &format!("(deny mach-lookup (global-name \"{}\"))", service.name),
            service.what,
        );
    }
}

fn rule(out: &mut String, rule: &str, note: &str) {
    let _ = writeln!(out, "{rule} ; {note}");
}
