//! Asking upstream resolvers: UDP from a fresh random port with a random ID, TCP when the answer
//! is truncated, the next resolver when one fails or times out.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The UDP payload size egressd offers upstream and accepts from clients (the DNS flag day 2020
/// recommendation: no fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Why no upstream answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// None configured (and none in the host's resolver configuration).
    #[error("no upstream resolver configured")]
    NoUpstream,
    /// Every upstream timed out.
    #[error("upstream resolvers timed out")]
    Timeout,
    /// The last upstream failed otherwise.
    #[error("upstream resolver failed: {0}")]
    Failed(String),
}

/// Sends `query` to each upstream in turn until one answers it.
pub async fn ask(
    upstreams: &[SocketAddr],
    query: &Message,
    timeout: Duration,
) -> Result<Message, UpstreamError> {
    let bytes = query
        .to_vec()
        .map_err(|e| UpstreamError::Failed(e.to_string()))?;
    let mut last = UpstreamError::NoUpstream;
    for &upstream in upstreams {
        match tokio::time::timeout(timeout, ask_one(upstream, query, &bytes)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => last = UpstreamError::Failed(format!("{upstream}: {e}")),
            Err(_) => last = UpstreamError::Timeout,
        }
    }
    Err(last)
}

/// The query egressd sends upstream: a fresh random ID, recursion desired, one question, EDNS
/// with our payload size.
pub fn query_for(owner: &Name, qtype: RecordType, id: u16) -> Message {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(owner.clone(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    message.edns = Some(edns);
    message
}

/// True when `upstream` answers `sent` (same ID, a response, the same question).
pub fn answers(sent: &Message, upstream: &Message) -> bool {
    upstream.metadata.id == sent.metadata.id
        && upstream.metadata.message_type == MessageType::Response
        && match (sent.queries.first(), upstream.queries.first()) {
            (Some(a), Some(b)) => question_eq(a, b),
            _ => false,
        }
}

fn question_eq(a: &Query, b: &Query) -> bool {
    a.query_type() == b.query_type()
        && a.query_class() == b.query_class()
        && a.name().to_lowercase() == b.name().to_lowercase()
}

async fn ask_one(upstream: SocketAddr, query: &Message, bytes: &[u8]) -> std::io::Result<Message> {
    let answer = over_udp(upstream, query, bytes).await?;
    if answer.metadata.truncation {
        return over_tcp(upstream, query, bytes).await;
    }
    Ok(answer)
}

async fn over_udp(upstream: SocketAddr, query: &Message, bytes: &[u8]) -> std::io::Result<Message> {
    let local: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await?;
        // The socket is connected: only the upstream's address reaches it. Bytes that are no DNS
        // message are the upstream's broken answer: fail now rather than at the timeout. A
        // message for another ID or question (spoofed, stale) is ignored, so a blind spoofer
        // cannot end the lookup.
        let answer = Message::from_vec(&buf[..n]).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unreadable answer: {e}"),
            )
        })?;
        if answers(query, &answer) {
            return Ok(answer);
        }
    }
}

async fn over_tcp(upstream: SocketAddr, query: &Message, bytes: &[u8]) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len()).map_err(|_| std::io::Error::other("query too large"))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = usize::from(stream.read_u16().await?);
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    let answer = Message::from_vec(&buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    if !answers(query, &answer) {
        return Err(std::io::Error::other("TCP answer does not match the query"));
    }
    Ok(answer)
}
