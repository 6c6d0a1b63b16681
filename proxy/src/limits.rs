//! Limits and timeouts: every default is defined here once; the command line shows these values.

use std::time::Duration;

/// Limits and timeouts (docs/launcher.md, "Limits and timeouts").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time allowed to establish a TCP connection to one address.
    pub connect_timeout: Duration,
    /// Time allowed for a name lookup.
    pub dns_timeout: Duration,
    /// A CONNECT tunnel with no bytes in either direction for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// Time allowed for a client to send a complete request head (slowloris defence); also how long
    /// an idle keep-alive connection waits for its next request.
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes; larger heads get 431.
    pub max_header_bytes: usize,
    /// Connections served at once; one more gets `503` and is closed.
    pub max_connections: usize,
    /// Time allowed for an origin to send its whole response head, counted from the moment the
    /// request body has been sent (at once for a request without a body).
    pub response_timeout: Duration,
    /// An upload (a request body) with no bytes for this long is cut off: `408` when the client
    /// stopped sending, `504` when the destination stopped reading.
    pub upload_idle_timeout: Duration,
    /// Buffer size for each direction of a tunnel.
    pub tunnel_buffer_bytes: usize,
}

impl Limits {
    /// The defaults.
    pub const DEFAULT: Self = Self {
        connect_timeout: Duration::from_secs(10),
        dns_timeout: Duration::from_secs(5),
        tunnel_idle_timeout: Duration::from_secs(300),
        header_read_timeout: Duration::from_secs(10),
        max_header_bytes: 64 * 1024,
        max_connections: 1024,
        response_timeout: Duration::from_secs(60),
        upload_idle_timeout: Duration::from_secs(60),
        tunnel_buffer_bytes: 256 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
