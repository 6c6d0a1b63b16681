//! The SOCKS5 handshake, up to the request: the greeting and method selection, the username and
//! password (RFC 1929) when the proxy credential is on, and the request itself, each read whole
//! from the client into one small buffer (`wire` says when a message is whole). Bytes the client
//! sent after its request (optimistic data) are kept for the tunnel.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::wire::{self, Parsed, Request, WireError};
use crate::credential::Credential;
use crate::error::Failure;

/// The most the handshake reads ahead: the three longest messages, with room to spare.
const BUFFER: usize = 1024;

/// A handshake that reached its request.
pub(crate) struct Requested {
    pub(crate) request: Request,
    /// Bytes the client sent after the request, before any reply.
    pub(crate) pending: Vec<u8>,
}

/// Why a handshake ended without a request.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The client closed before sending a byte (a port probe): nothing to audit.
    Silent,
    /// The client closed, or the connection failed, in the middle of a message.
    CutShort,
    /// A message that is not SOCKS5; `AddressType` gets reply 08 first.
    Malformed(WireError),
    /// The client offers no method egressd serves (with the credential on: no username and
    /// password); it was told `0xFF`.
    NoMethod,
    /// The credential was refused (`proxy-auth-required` when not offered, `proxy-auth-invalid`).
    Unauthorized(Failure),
}

impl Ended {
    /// The audit reason; `None` for a silent close.
    pub(crate) fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Silent => None,
            Self::CutShort | Self::Malformed(_) | Self::NoMethod => Some("bad-request"),
            Self::Unauthorized(failure) => Some(failure.reason_code()),
        }
    }
}

/// Reads the handshake from `io` and answers its first two steps; the request is returned
/// unanswered. `credential`: the secret a username/password must carry; `None` accepts any
/// client (no authentication, or any username and password).
pub(crate) async fn handshake<Io>(
    io: &mut Io,
    credential: Option<&Credential>,
) -> Result<Requested, Ended>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(BUFFER);
    let greeting = read(io, &mut buf, wire::greeting).await?;
    let method = match (credential, greeting) {
        (Some(_), g) if g.password => wire::METHOD_PASSWORD,
        (None, g) if g.none => wire::METHOD_NONE,
        (None, g) if g.password => wire::METHOD_PASSWORD,
        (credential, _) => {
            let _ = write(io, &wire::method_selection(wire::METHOD_UNACCEPTABLE)).await;
            return Err(match credential {
                Some(_) => Ended::Unauthorized(Failure::ProxyAuthRequired),
                None => Ended::NoMethod,
            });
        }
    };
    write(io, &wire::method_selection(method))
        .await
        .map_err(|_| Ended::CutShort)?;
    if method == wire::METHOD_PASSWORD {
        let used = read_len(io, &mut buf, |b| wire::login(b).map(|p| p.used())).await?;
        let checked = match credential {
            None => Ok(()),
            Some(credential) => match wire::login(&buf[..used]) {
                Ok(Parsed::Complete(login, _)) => {
                    credential.check_login(login.user, login.password)
                }
                // The same bytes read whole a moment ago; refused all the same.
                _ => Err(Failure::ProxyAuthInvalid),
            },
        };
        // The secret is not kept a moment longer than the check.
        buf.drain(..used);
        let _ = write(io, &wire::login_status(checked.is_ok())).await;
        checked.map_err(Ended::Unauthorized)?;
    }
    let request = read(io, &mut buf, wire::request).await?;
    Ok(Requested {
        request,
        pending: buf,
    })
}

/// Reads until `buf` starts with a whole message; takes it off `buf` and returns it.
async fn read<Io, T>(
    io: &mut Io,
    buf: &mut Vec<u8>,
    parse: fn(&[u8]) -> Result<Parsed<T>, WireError>,
) -> Result<T, Ended>
where
    Io: AsyncRead + Unpin,
{
    let used = read_len(io, buf, |b| parse(b).map(|p| p.used())).await?;
    let message = match parse(&buf[..used]) {
        Ok(Parsed::Complete(message, _)) => message,
        // The same bytes parsed whole a moment ago.
        Ok(Parsed::Incomplete) => return Err(Ended::CutShort),
        Err(error) => return Err(Ended::Malformed(error)),
    };
    buf.drain(..used);
    Ok(message)
}

/// Reads until `buf` starts with a whole message; its length.
async fn read_len<Io>(
    io: &mut Io,
    buf: &mut Vec<u8>,
    whole: impl Fn(&[u8]) -> Result<Option<usize>, WireError>,
) -> Result<usize, Ended>
where
    Io: AsyncRead + Unpin,
{
    loop {
        match whole(buf) {
            Ok(Some(used)) => return Ok(used),
            Ok(None) => {}
            Err(error) => return Err(Ended::Malformed(error)),
        }
        let room = BUFFER.saturating_sub(buf.len());
        if room == 0 {
            // Unreachable with messages of at most `wire::MAX_LOGIN` bytes; refused all the same.
            return Err(Ended::CutShort);
        }
        let was_empty = buf.is_empty();
        let read = (&mut *io).take(room as u64).read_buf(buf).await;
        match read {
            Ok(0) if was_empty => return Err(Ended::Silent),
            Ok(0) => return Err(Ended::CutShort),
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "SOCKS client connection failed during the handshake");
                return Err(Ended::CutShort);
            }
        }
    }
}

/// Writes a short answer.
pub(crate) async fn write<Io: AsyncWrite + Unpin>(io: &mut Io, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// Runs the handshake against `sent` (all of it at once, then end of file); what it returned
    /// and what the client was told.
    async fn run(
        sent: &[u8],
        credential: Option<&Credential>,
    ) -> (Result<Requested, Ended>, Vec<u8>) {
        let (mut client, mut server) = duplex(4096);
        client.write_all(sent).await.unwrap();
        client.shutdown().await.unwrap();
        let result = handshake(&mut server, credential).await;
        drop(server);
        let mut told = Vec::new();
        client.read_to_end(&mut told).await.unwrap();
        (result, told)
    }

    fn login(user: &str, password: &str) -> Vec<u8> {
        [
            vec![1, user.len() as u8],
            user.as_bytes().to_vec(),
            vec![password.len() as u8],
            password.as_bytes().to_vec(),
        ]
        .concat()
    }

    const REQUEST: [u8; 10] = [5, 1, 0, 1, 127, 0, 0, 1, 0, 80];

    #[tokio::test]
    async fn the_credential_is_required_when_it_is_on_and_checked_whole() {
        let credential = Credential::new(SECRET).unwrap();
        let good = [
            &[5, 1, 2][..],
            &login("egressd", SECRET),
            &REQUEST,
            b"early",
        ]
        .concat();
        let (result, told) = run(&good, Some(&credential)).await;
        let requested = result.unwrap();
        assert_eq!(requested.request.port, 80);
        assert_eq!(requested.pending, b"early", "optimistic data is kept");
        assert_eq!(told, [5, 2, 1, 0]);

        let (result, told) = run(&[5, 1, 0], Some(&credential)).await;
        assert!(
            matches!(result, Err(Ended::Unauthorized(Failure::ProxyAuthRequired))),
            "{:?}",
            result.err()
        );
        assert_eq!(told, [5, 0xff]);

        for (user, password) in [("egressd", "wrong"), ("other", SECRET), ("", "")] {
            let sent = [&[5, 2, 0, 2][..], &login(user, password), &REQUEST].concat();
            let (result, told) = run(&sent, Some(&credential)).await;
            assert!(
                matches!(result, Err(Ended::Unauthorized(Failure::ProxyAuthInvalid))),
                "{user}: {:?}",
                result.err()
            );
            assert_eq!(told, [5, 2, 1, 1], "{user}");
        }
    }

    #[tokio::test]
    async fn without_a_credential_any_client_passes() {
        let (result, told) = run(&[&[5, 1, 0][..], &REQUEST].concat(), None).await;
        assert!(result.is_ok());
        assert_eq!(told, [5, 0]);
        let sent = [&[5, 1, 2][..], &login("anyone", "anything"), &REQUEST].concat();
        let (result, told) = run(&sent, None).await;
        assert!(result.is_ok());
        assert_eq!(told, [5, 2, 1, 0]);
        let (result, told) = run(&[5, 1, 1], None).await;
        assert!(matches!(result, Err(Ended::NoMethod)));
        assert_eq!(told, [5, 0xff]);
    }

    #[tokio::test]
    async fn bytes_that_are_not_socks5_or_end_early_end_the_handshake() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "Silent"),
            (b"GET / HTTP/1.1\r\n\r\n", "Malformed(Version(71))"),
            (&[5, 2, 0], "CutShort"),
            (&[5, 1, 0, 5, 1], "CutShort"),
            (&[5, 1, 0, 5, 1, 0, 9, 1, 2], "Malformed(AddressType(9))"),
            (&[5, 1, 0, 4, 1, 0, 1], "Malformed(Version(4))"),
        ];
        for (sent, want) in cases {
            let (result, _) = run(sent, None).await;
            let got = format!("{:?}", result.err());
            assert_eq!(got, format!("Some({want})"), "{sent:?}");
        }
    }
}
