//! What a SOCKS client is told when egressd does not serve its request: one RFC 1928 reply code
//! per failure. The codes carry little (no reason, no rule), so the audit event and the log say
//! why; docs/launcher.md ("SOCKS5") has this table for users.
//!
//! | failure | reply |
//! |---|---|
//! | refused by the policy (any reason), a malformed destination, a rule that inspects | `02` connection not allowed by ruleset |
//! | the destination's network is unreachable | `03` network unreachable |
//! | no address, DNS failure or timeout, host unreachable | `04` host unreachable |
//! | the destination refused the connection | `05` connection refused |
//! | connecting timed out | `06` TTL expired (as Tor answers a timeout) |
//! | `BIND`, `UDP ASSOCIATE`, any other command | `07` command not supported |
//! | an address type but IPv4, name, IPv6 | `08` address type not supported |
//! | anything else (the parent proxy failed, egressd out of resources) | `01` general failure |

use std::io::ErrorKind;

use super::wire::Reply;
use crate::error::Failure;

/// The reply for a request that ended with `failure`.
pub(crate) fn reply_for(failure: &Failure) -> Reply {
    match failure {
        Failure::Denied(_)
        | Failure::ChainDenied { .. }
        | Failure::AddressesDenied { .. }
        | Failure::MalformedTarget(_)
        | Failure::BadRequest(_)
        | Failure::ProxyAuthRequired
        | Failure::ProxyAuthInvalid => Reply::NotAllowed,
        Failure::NoAddress | Failure::Dns(_) | Failure::DnsTimeout => Reply::HostUnreachable,
        Failure::Connect { error, .. } => match error.kind() {
            ErrorKind::ConnectionRefused => Reply::ConnectionRefused,
            ErrorKind::NetworkUnreachable => Reply::NetworkUnreachable,
            _ => Reply::HostUnreachable,
        },
        Failure::ConnectTimeout { .. } => Reply::TtlExpired,
        _ => Reply::GeneralFailure,
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use policy::{Policy, Target};

    use super::*;

    #[test]
    fn each_failure_maps_to_its_reply_code() {
        let policy = Policy::parse("version = 1\n", "t.toml").unwrap();
        let denied = policy.decide(&Target::new("example.org", 443));
        let connect = |kind: ErrorKind| Failure::Connect {
            addr: "127.0.0.1:1".parse().unwrap(),
            error: Arc::new(io::Error::from(kind)),
        };
        let cases = [
            (Failure::Denied(denied), 2),
            (Failure::MalformedTarget("x".to_owned()), 2),
            (connect(ErrorKind::NetworkUnreachable), 3),
            (connect(ErrorKind::HostUnreachable), 4),
            (Failure::NoAddress, 4),
            (Failure::DnsTimeout, 4),
            (connect(ErrorKind::ConnectionRefused), 5),
            (
                Failure::ConnectTimeout {
                    addr: "127.0.0.1:1".parse().unwrap(),
                },
                6,
            ),
            (Failure::Upstream("parent".to_owned()), 1),
            (
                Failure::ProxyResources(Arc::new(io::Error::from(ErrorKind::OutOfMemory))),
                1,
            ),
        ];
        for (failure, code) in cases {
            assert_eq!(reply_for(&failure).code(), code, "{failure}");
        }
    }
}
