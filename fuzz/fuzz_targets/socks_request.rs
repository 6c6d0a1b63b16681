//! Any bytes a sandbox sends to the SOCKS5 listener, read as the handler reads them (a greeting,
//! a username/password message, a request, one after the other): never a panic, never more bytes
//! taken than given, every prefix of a whole message incomplete, and every request read writes
//! back to the same bytes (the reserved byte aside) and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::socks::wire::{self, Address, Command, Parsed, WireError};

/// Reads one message at the start of `data`; checks what every parser must hold. `None` when
/// the stream stops here (an error, or too few bytes).
fn take<'a, T>(
    data: &mut &'a [u8],
    parse: impl Fn(&'a [u8]) -> Result<Parsed<T>, WireError>,
) -> Option<T> {
    match parse(data) {
        Ok(Parsed::Complete(message, used)) => {
            assert!(used > 0 && used <= data.len());
            for end in 0..used {
                assert!(matches!(parse(&data[..end]), Ok(Parsed::Incomplete)));
            }
            *data = &data[used..];
            Some(message)
        }
        Ok(Parsed::Incomplete) | Err(_) => None,
    }
}

/// The client's bytes for `request`, with reserved byte `reserved`.
fn encode(request: &wire::Request, reserved: u8) -> Vec<u8> {
    let command = match request.command {
        Command::Connect => 1,
        Command::Bind => 2,
        Command::UdpAssociate => 3,
        Command::Other(byte) => byte,
    };
    let mut out = vec![wire::VERSION, command, reserved];
    match &request.address {
        Address::V4(v4) => {
            out.push(1);
            out.extend_from_slice(&v4.octets());
        }
        Address::V6(v6) => {
            out.push(4);
            out.extend_from_slice(&v6.octets());
        }
        Address::Name(name) => {
            out.push(3);
            out.push(u8::try_from(name.len()).expect("a name read back is at most 255 bytes"));
            out.extend_from_slice(name);
        }
    }
    out.extend_from_slice(&request.port.to_be_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let Some(greeting) = take(&mut rest, wire::greeting) else {
        return;
    };
    if greeting.password {
        let Some(login) = take(&mut rest, wire::login) else {
            return;
        };
        assert!(!format!("{login:?}").contains("password: ["));
    }
    let before = rest;
    let Some(request) = take(&mut rest, wire::request) else {
        return;
    };
    let bytes = encode(&request, before[2]);
    assert_eq!(bytes, before[..bytes.len()]);
    assert!(bytes.len() <= wire::MAX_REQUEST);
    assert_eq!(
        wire::request(&bytes),
        Ok(Parsed::Complete(request, bytes.len()))
    );
});
