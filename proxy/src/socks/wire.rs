//! SOCKS5 on the wire (RFC 1928, with RFC 1929 username/password authentication): the client's
//! three messages read from a byte buffer, without I/O, and the server's answers written.
//!
//! Every byte comes from a sandbox and is read defensively: a parser never panics and never
//! indexes past what it was given; it says [`Parsed::Incomplete`] until the buffer holds a whole
//! message, an error for a message it cannot read, and otherwise the message and how many bytes
//! it took. The fuzz target `socks_request` (fuzz/) holds it to that. What this module does not
//! do: decide anything (the handler in `socks/mod.rs` does, with the proxy's router).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol version byte of every SOCKS5 message.
pub const VERSION: u8 = 5;
/// The version byte of RFC 1929's username/password messages.
pub const AUTH_VERSION: u8 = 1;
/// Method: no authentication.
pub const METHOD_NONE: u8 = 0x00;
/// Method: username/password (RFC 1929).
pub const METHOD_PASSWORD: u8 = 0x02;
/// Method selection: no acceptable method; the client must close.
pub const METHOD_UNACCEPTABLE: u8 = 0xff;
/// Longest greeting: version, count, 255 methods.
pub const MAX_GREETING: usize = 2 + 255;
/// Longest username/password message: version, two lengths, 255 bytes each.
pub const MAX_LOGIN: usize = 3 + 255 + 255;
/// Longest request: version, command, reserved, address type, a 255-byte name with its length,
/// port.
pub const MAX_REQUEST: usize = 4 + 1 + 255 + 2;

/// What reading a buffer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A whole message, and the number of bytes of the buffer it took.
    Complete(T, usize),
    /// The buffer holds the start of a message; read more.
    Incomplete,
}

impl<T> Parsed<T> {
    /// The bytes a whole message took; `None` while incomplete.
    pub fn used(&self) -> Option<usize> {
        match self {
            Self::Complete(_, used) => Some(*used),
            Self::Incomplete => None,
        }
    }
}

/// A message that is not SOCKS5 as RFC 1928 and RFC 1929 write it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first byte is not 5: another protocol (an HTTP request, SOCKS4).
    #[error("not SOCKS version 5 (the first byte is {0:#04x})")]
    Version(u8),
    /// A greeting that offers no method at all.
    #[error("the greeting offers no authentication method")]
    NoMethods,
    /// A username/password message whose version byte is not 1.
    #[error("not RFC 1929 username/password version 1 (the first byte is {0:#04x})")]
    AuthVersion(u8),
    /// A request whose address type is none of IPv4 (1), domain name (3), IPv6 (4): its length
    /// is unknown, so nothing after it can be read.
    #[error("address type {0:#04x} is not IPv4 (1), a domain name (3) or IPv6 (4)")]
    AddressType(u8),
}

/// The methods a client offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Greeting {
    /// No authentication (`0x00`).
    pub none: bool,
    /// Username/password (`0x02`).
    pub password: bool,
}

/// Reads the greeting: `VER NMETHODS METHODS...`.
pub fn greeting(buf: &[u8]) -> Result<Parsed<Greeting>, WireError> {
    let Some(&version) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let Some(&count) = buf.get(1) else {
        return Ok(Parsed::Incomplete);
    };
    if count == 0 {
        return Err(WireError::NoMethods);
    }
    let end = 2 + usize::from(count);
    let Some(methods) = buf.get(2..end) else {
        return Ok(Parsed::Incomplete);
    };
    let mut greeting = Greeting::default();
    for &method in methods {
        match method {
            METHOD_NONE => greeting.none = true,
            METHOD_PASSWORD => greeting.password = true,
            _ => {}
        }
    }
    Ok(Parsed::Complete(greeting, end))
}

/// A username and password as presented (RFC 1929). Its `Debug` never shows the password.
#[derive(PartialEq, Eq)]
pub struct Login<'a> {
    /// The user name's bytes.
    pub user: &'a [u8],
    /// The password's bytes.
    pub password: &'a [u8],
}

impl fmt::Debug for Login<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("user", &String::from_utf8_lossy(self.user))
            .field("password", &format_args!("<{} bytes>", self.password.len()))
            .finish()
    }
}

/// Reads a username/password message: `VER ULEN UNAME PLEN PASSWD`. Empty fields (RFC 1929 says
/// 1 to 255 bytes) are read as empty: they are simply not the credential.
pub fn login(buf: &[u8]) -> Result<Parsed<Login<'_>>, WireError> {
    let Some(&version) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    if version != AUTH_VERSION {
        return Err(WireError::AuthVersion(version));
    }
    let Some(&user_len) = buf.get(1) else {
        return Ok(Parsed::Incomplete);
    };
    let user_end = 2 + usize::from(user_len);
    let (Some(user), Some(&password_len)) = (buf.get(2..user_end), buf.get(user_end)) else {
        return Ok(Parsed::Incomplete);
    };
    let end = user_end + 1 + usize::from(password_len);
    let Some(password) = buf.get(user_end + 1..end) else {
        return Ok(Parsed::Incomplete);
    };
    Ok(Parsed::Complete(Login { user, password }, end))
}

/// What the client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `CONNECT` (1): a TCP connection to the destination; the only one egressd serves.
    Connect,
    /// `BIND` (2): a listening socket for an inbound connection.
    Bind,
    /// `UDP ASSOCIATE` (3): a UDP relay.
    UdpAssociate,
    /// Any other byte.
    Other(u8),
}

impl Command {
    fn from_byte(byte: u8) -> Self {
        match byte {
            1 => Self::Connect,
            2 => Self::Bind,
            3 => Self::UdpAssociate,
            other => Self::Other(other),
        }
    }

    /// The command's name, as audit events say it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Bind => "BIND",
            Self::UdpAssociate => "UDP ASSOCIATE",
            Self::Other(_) => "UNKNOWN",
        }
    }
}

/// The destination's address as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// Address type 1.
    V4(Ipv4Addr),
    /// Address type 4.
    V6(Ipv6Addr),
    /// Address type 3: 0 to 255 bytes, which the client means as a name (socks5h). Not checked
    /// here: it may be empty, not UTF-8, or spell an IP address.
    Name(Vec<u8>),
}

/// A request: `VER CMD RSV ATYP DST.ADDR DST.PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// What is asked.
    pub command: Command,
    /// Where to.
    pub address: Address,
    /// Which port (0 is read as sent; it is no destination).
    pub port: u16,
}

/// Reads a request. The reserved byte is not checked (RFC 1928 asks clients to send 0; its value
/// changes nothing here).
pub fn request(buf: &[u8]) -> Result<Parsed<Request>, WireError> {
    let Some(&version) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let (Some(&command), Some(&address_type)) = (buf.get(1), buf.get(3)) else {
        return Ok(Parsed::Incomplete);
    };
    let rest = buf.get(4..).unwrap_or_default();
    let (address, len) = match address_type {
        1 => match rest.first_chunk::<4>() {
            Some(octets) => (Address::V4(Ipv4Addr::from(*octets)), 4),
            None => return Ok(Parsed::Incomplete),
        },
        4 => match rest.first_chunk::<16>() {
            Some(octets) => (Address::V6(Ipv6Addr::from(*octets)), 16),
            None => return Ok(Parsed::Incomplete),
        },
        3 => {
            let Some(&name_len) = rest.first() else {
                return Ok(Parsed::Incomplete);
            };
            let len = 1 + usize::from(name_len);
            match rest.get(1..len) {
                Some(name) => (Address::Name(name.to_vec()), len),
                None => return Ok(Parsed::Incomplete),
            }
        }
        other => return Err(WireError::AddressType(other)),
    };
    let Some(port) = rest.get(len..len + 2).and_then(|p| p.first_chunk::<2>()) else {
        return Ok(Parsed::Incomplete);
    };
    let request = Request {
        command: Command::from_byte(command),
        address,
        port: u16::from_be_bytes(*port),
    };
    Ok(Parsed::Complete(request, 4 + len + 2))
}

/// The reply codes of RFC 1928 §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `00` succeeded.
    Succeeded,
    /// `01` general SOCKS server failure.
    GeneralFailure,
    /// `02` connection not allowed by ruleset.
    NotAllowed,
    /// `03` network unreachable.
    NetworkUnreachable,
    /// `04` host unreachable.
    HostUnreachable,
    /// `05` connection refused.
    ConnectionRefused,
    /// `06` TTL expired.
    TtlExpired,
    /// `07` command not supported.
    CommandNotSupported,
    /// `08` address type not supported.
    AddressTypeNotSupported,
}

impl Reply {
    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::Succeeded => 0,
            Self::GeneralFailure => 1,
            Self::NotAllowed => 2,
            Self::NetworkUnreachable => 3,
            Self::HostUnreachable => 4,
            Self::ConnectionRefused => 5,
            Self::TtlExpired => 6,
            Self::CommandNotSupported => 7,
            Self::AddressTypeNotSupported => 8,
        }
    }
}

/// The method selection: `VER METHOD`.
pub fn method_selection(method: u8) -> [u8; 2] {
    [VERSION, method]
}

/// The answer to a username/password message: `VER STATUS`, 0 for success.
pub fn login_status(accepted: bool) -> [u8; 2] {
    [AUTH_VERSION, if accepted { 0 } else { 1 }]
}

/// A reply: `VER REP RSV ATYP BND.ADDR BND.PORT`, with `bound` the address egressd connected
/// from (`0.0.0.0:0` for a failure).
pub fn reply(code: Reply, bound: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(22);
    out.extend_from_slice(&[VERSION, code.code(), 0]);
    match bound.ip() {
        IpAddr::V4(v4) => {
            out.push(1);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(4);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

/// The bound address of a failure reply.
pub const UNBOUND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every prefix of a whole message is incomplete, never an error or a panic.
    fn prefixes_are_incomplete<T: fmt::Debug>(
        whole: &[u8],
        parse: impl Fn(&[u8]) -> Result<Parsed<T>, WireError>,
    ) {
        for end in 0..whole.len() {
            let got = parse(&whole[..end]);
            assert!(
                matches!(got, Ok(Parsed::Incomplete)),
                "{:?}: {got:?}",
                &whole[..end]
            );
        }
    }

    #[test]
    fn greetings_are_read_whole_and_only_whole() {
        let cases: [(&[u8], _); 6] = [
            (
                &[5, 1, 0],
                Ok(Parsed::Complete(
                    Greeting {
                        none: true,
                        password: false,
                    },
                    3,
                )),
            ),
            (
                &[5, 3, 0x80, 2, 0, 0xaa],
                Ok(Parsed::Complete(
                    Greeting {
                        none: true,
                        password: true,
                    },
                    5,
                )),
            ),
            (&[5, 2, 1, 3], Ok(Parsed::Complete(Greeting::default(), 4))),
            (&[5, 0], Err(WireError::NoMethods)),
            (&[4, 1, 0], Err(WireError::Version(4))),
            (b"CONNECT x:1 HTTP/1.1\r\n", Err(WireError::Version(b'C'))),
        ];
        for (bytes, want) in cases {
            assert_eq!(greeting(bytes), want, "{bytes:?}");
        }
        prefixes_are_incomplete(&[5, 2, 0, 2], greeting);
        let mut all = vec![5, 255];
        all.extend(0..=254);
        assert!(matches!(
            greeting(&all),
            Ok(Parsed::Complete(_, MAX_GREETING))
        ));
    }

    #[test]
    fn logins_are_read_whole_and_hide_the_password() {
        let whole = [
            1, 7, b'e', b'g', b'r', b'e', b's', b's', b'd', 3, b'p', b'w', b'd', 9,
        ];
        let Ok(Parsed::Complete(got, 13)) = login(&whole) else {
            panic!("{:?}", login(&whole));
        };
        assert_eq!((got.user, got.password), (&b"egressd"[..], &b"pwd"[..]));
        assert!(!format!("{got:?}").contains("pwd"), "{got:?}");
        prefixes_are_incomplete(&whole[..13], |b| {
            login(b).map(|parsed| match parsed {
                Parsed::Complete(got, n) => Parsed::Complete(got.user.len(), n),
                Parsed::Incomplete => Parsed::Incomplete,
            })
        });
        assert_eq!(
            login(&[1, 0, 0]),
            Ok(Parsed::Complete(
                Login {
                    user: b"",
                    password: b""
                },
                3
            ))
        );
        assert_eq!(login(&[5, 1, 0]), Err(WireError::AuthVersion(5)));
        let long = [vec![1, 255], vec![b'u'; 255], vec![255], vec![b'p'; 255]].concat();
        assert!(matches!(login(&long), Ok(Parsed::Complete(_, MAX_LOGIN))));
    }

    #[test]
    fn requests_of_every_address_type_are_read() {
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let cases: Vec<(Vec<u8>, Request, usize)> = vec![
            (
                vec![5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90],
                Request {
                    command: Command::Connect,
                    address: Address::V4(Ipv4Addr::LOCALHOST),
                    port: 8080,
                },
                10,
            ),
            (
                [vec![5, 1, 0, 4], v6.octets().to_vec(), vec![1, 187]].concat(),
                Request {
                    command: Command::Connect,
                    address: Address::V6(v6),
                    port: 443,
                },
                22,
            ),
            (
                [vec![5, 1, 0, 3, 11], b"example.org".to_vec(), vec![0, 80]].concat(),
                Request {
                    command: Command::Connect,
                    address: Address::Name(b"example.org".to_vec()),
                    port: 80,
                },
                18,
            ),
            (
                vec![5, 2, 0, 3, 0, 0, 0],
                Request {
                    command: Command::Bind,
                    address: Address::Name(Vec::new()),
                    port: 0,
                },
                7,
            ),
            (
                vec![5, 3, 0xff, 1, 0, 0, 0, 0, 0, 0],
                Request {
                    command: Command::UdpAssociate,
                    address: Address::V4(Ipv4Addr::UNSPECIFIED),
                    port: 0,
                },
                10,
            ),
            (
                vec![5, 9, 0, 1, 1, 2, 3, 4, 0, 1, 0xde, 0xad],
                Request {
                    command: Command::Other(9),
                    address: Address::V4(Ipv4Addr::new(1, 2, 3, 4)),
                    port: 1,
                },
                10,
            ),
        ];
        for (bytes, want, len) in cases {
            assert_eq!(
                request(&bytes),
                Ok(Parsed::Complete(want, len)),
                "{bytes:?}"
            );
            prefixes_are_incomplete(&bytes[..len], request);
        }
        assert_eq!(request(&[5, 1, 0, 2, 0, 0]), Err(WireError::AddressType(2)));
        assert_eq!(request(&[0x47, 0x45, 0x54]), Err(WireError::Version(0x47)));
        let longest = [vec![5, 1, 0, 3, 255], vec![b'a'; 255], vec![0, 1]].concat();
        assert!(matches!(
            request(&longest),
            Ok(Parsed::Complete(_, MAX_REQUEST))
        ));
    }

    #[test]
    fn replies_carry_the_code_and_the_bound_address() {
        assert_eq!(method_selection(METHOD_PASSWORD), [5, 2]);
        assert_eq!(login_status(true), [1, 0]);
        assert_eq!(login_status(false), [1, 1]);
        assert_eq!(
            reply(Reply::CommandNotSupported, UNBOUND),
            [5, 7, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            reply(Reply::Succeeded, "127.0.0.1:8080".parse().unwrap()),
            [5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]
        );
        let v6 = reply(Reply::NotAllowed, "[::1]:443".parse().unwrap());
        assert_eq!(v6.len(), 22);
        assert_eq!((v6[1], v6[3], v6[19], &v6[20..]), (2, 4, 1, &[1, 187][..]));
        let codes: Vec<u8> = [
            Reply::Succeeded,
            Reply::GeneralFailure,
            Reply::NotAllowed,
            Reply::NetworkUnreachable,
            Reply::HostUnreachable,
            Reply::ConnectionRefused,
            Reply::TtlExpired,
            Reply::CommandNotSupported,
            Reply::AddressTypeNotSupported,
        ]
        .map(Reply::code)
        .to_vec();
        assert_eq!(codes, (0..=8).collect::<Vec<u8>>());
    }
}
