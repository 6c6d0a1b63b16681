//! egressd's answer when hyper gives up on a client connection before a request reached the
//! service: a head over `--max-header-bytes` or with too many fields (431 `head-too-large`), a
//! target too long (414 `uri-too-long`), a malformed head or one the client cut short (400
//! `bad-request`), a head not finished within `--header-read-timeout` (408 `head-timeout`), and the
//! HTTP/2 preface (an HTTP/2 GOAWAY, `http2-unsupported`).
//!
//! hyper's own response to the first three was kept off the wire by `client_io`; this writes
//! egressd's in its place (reason header, readable body), closes gracefully, and emits the one
//! audit event. Connections that end quietly (the client left between requests, an idle
//! keep-alive timed out) get neither.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::audit::{Audit, Caller};
use crate::client_io::ClientIo;
use crate::error::Failure;
use crate::limits::Limits;
use crate::respond::failure_bytes;

/// How a client's HTTP/2 connection preface begins (RFC 9113 §3.4); enough of it to know, even
/// when hyper stopped reading before the whole 24 bytes.
const PREFACE_START: &[u8] = b"PRI * HTTP/2";
/// HTTP/2's error code for "use HTTP/1.1" (RFC 9113 §7).
const HTTP_1_1_REQUIRED: u32 = 0xd;
/// Sent in the GOAWAY's debug data, for whoever reads a packet capture or a client's debug log.
const GOAWAY_DEBUG: &[u8] =
    b"egressd speaks HTTP/1.1 only: send HTTP/1.1 requests (absolute-form or CONNECT)";

/// Time allowed to write the answer.
const WRITE_TIME: Duration = Duration::from_secs(1);
/// After answering, what the client still sends is read and dropped, up to this long and this
/// much, before the socket closes: closing with unread bytes makes the kernel reset the
/// connection, and a reset can destroy the answer before the client has read it.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// What to do about the error hyper ended a connection with.
enum Edge {
    /// Write egressd's answer and audit it.
    Answer(Failure),
    /// hyper's own response went out (see `client_io`): audit it only.
    Answered(Failure),
}

/// Answers and audits the request behind `error`, if there was one. `io` is the connection
/// hyper gave back; `read_buf` what hyper had read of it and not used.
pub(crate) async fn answer<Io>(
    caller: Caller,
    limits: &Limits,
    error: &hyper::Error,
    io: ClientIo<Io>,
    read_buf: Bytes,
) where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let Some(edge) = classify(
        error,
        io.swallowed(),
        io.between_requests(),
        &read_buf,
        limits,
    ) else {
        tracing::debug!(%error, "client connection ended with an error");
        return;
    };
    let (failure, write) = match edge {
        Edge::Answer(failure) => (failure, true),
        Edge::Answered(failure) => (failure, false),
    };
    tracing::debug!(%error, reason = failure.reason_code(), "request head refused");
    let (method, target) = match failure {
        Failure::Http2 => ("PRI", "*"),
        _ => ("", ""),
    };
    let mut audit = Audit::new(caller, method, target.to_owned());
    audit.failed(&failure);
    if !write {
        return;
    }
    let bytes = match failure {
        Failure::Http2 => goaway(),
        _ => failure_bytes(&failure),
    };
    let mut io = io.into_inner();
    let written = tokio::time::timeout(WRITE_TIME, async {
        io.write_all(&bytes).await?;
        io.shutdown().await
    })
    .await;
    // The request has ended for the record; what follows only closes the socket politely.
    drop(audit);
    if let Ok(Ok(())) = written {
        linger(&mut io).await;
    }
}

fn classify(
    error: &hyper::Error,
    swallowed: Option<StatusCode>,
    between_requests: bool,
    read_buf: &[u8],
    limits: &Limits,
) -> Option<Edge> {
    // The whole preface (hyper says so, and wrote nothing), or its start (hyper's parser stops at
    // the version and answers 400).
    let preface = read_buf.starts_with(PREFACE_START);
    if error.is_parse_version_h2() || (preface && swallowed.is_some()) {
        return Some(Edge::Answer(Failure::Http2));
    }
    if let Some(status) = swallowed {
        return Some(Edge::Answer(head_failure(error, status, limits)));
    }
    if error.is_parse() {
        let status = if error.is_parse_too_large() {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        return Some(Edge::Answered(head_failure(error, status, limits)));
    }
    // Below, hyper wrote nothing. In the middle of a request (its body, say), the request's own
    // event tells. An empty buffer means no request had begun: an idle keep-alive connection
    // timed out, or the client left between requests.
    if !between_requests || read_buf.is_empty() {
        return None;
    }
    if error.is_timeout() {
        return Some(Edge::Answer(Failure::HeadTimeout(
            limits.header_read_timeout,
        )));
    }
    if error.is_incomplete_message() {
        return Some(Edge::Answer(Failure::MalformedHead(
            "the connection closed in the middle of the request head".to_owned(),
        )));
    }
    None
}

/// The failure for hyper's automatic response of `status`.
fn head_failure(error: &hyper::Error, status: StatusCode, limits: &Limits) -> Failure {
    match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Failure::HeadTooLarge {
            limit: limits.max_header_bytes,
        },
        StatusCode::URI_TOO_LONG => Failure::UriTooLong,
        _ => Failure::MalformedHead(error.to_string()),
    }
}

/// An HTTP/2 server preface (an empty SETTINGS frame, which a client waits for first) and a
/// GOAWAY with HTTP_1_1_REQUIRED: the answer a prior-knowledge client understands.
fn goaway() -> Vec<u8> {
    // Frame header: 24-bit length, type, flags, 31-bit stream id (RFC 9113 §4.1).
    let mut out = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    let length = u32::try_from(8 + GOAWAY_DEBUG.len()).unwrap_or(8);
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]);
    // Last stream id 0 (no request was processed), then the error code and the debug data.
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&HTTP_1_1_REQUIRED.to_be_bytes());
    out.extend_from_slice(GOAWAY_DEBUG);
    out
}

/// Reads and drops what the client still sends, bounded, until it closes.
async fn linger<Io: AsyncRead + Unpin>(io: &mut Io) {
    let mut buf = [0u8; 4096];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_goaway_is_a_settings_frame_then_a_goaway_frame() {
        let bytes = goaway();
        assert_eq!(&bytes[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let frame = &bytes[9..];
        let length = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
        assert_eq!(length, frame.len() - 9);
        assert_eq!(frame[3], 0x7, "GOAWAY");
        assert_eq!(&frame[5..9], &[0, 0, 0, 0], "stream 0");
        assert_eq!(&frame[9..13], &[0, 0, 0, 0], "last stream id");
        assert_eq!(&frame[13..17], &[0, 0, 0, 0xd], "HTTP_1_1_REQUIRED");
        assert_eq!(&frame[17..], GOAWAY_DEBUG);
    }
}
