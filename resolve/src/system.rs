//! The host's resolvers, for a policy that names no upstreams.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

/// Where the host's resolver configuration is read from (macOS keeps a generated copy there too).
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The host's resolvers from its configuration (`/etc/resolv.conf`), port 53. Empty, with a
/// warning, if it cannot be read: names then fail to resolve rather than going anywhere else.
/// `read` reads the file: the caller says how (`egressd run` takes a regular file only, opened
/// without blocking, so a FIFO there cannot hang it).
pub fn system_upstreams(read: impl FnOnce(&Path) -> io::Result<Vec<u8>>) -> Vec<SocketAddr> {
    let text = match read(Path::new(RESOLV_CONF)) {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(path = RESOLV_CONF, %error, "cannot read the host's resolver configuration");
            return Vec::new();
        }
    };
    parse(&text)
}

fn parse(text: &[u8]) -> Vec<SocketAddr> {
    let (config, errors) = resolv_conf::Config::parse_with_errors(text);
    for error in errors {
        tracing::debug!(path = RESOLV_CONF, %error, "skipping a line of the resolver configuration");
    }
    config
        .nameservers
        .iter()
        .map(|ip| SocketAddr::new(ip.into(), 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_in_order_and_the_rest_is_ignored() {
        let text = b"# generated\nsearch corp.example\nnameserver 10.0.0.53\noptions ndots:2\nnameserver fd00::53\nbogus line\n";
        assert_eq!(
            parse(text),
            [
                "10.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap()
            ]
        );
        assert!(parse(b"").is_empty());
    }
}
