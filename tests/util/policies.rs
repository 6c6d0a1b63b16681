//! Policies the tests write: loopback origins allowed by name, and no path to a real resolver.

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
