//! The SOCKS5 listener (`--socks-listen`, `--socks-unix`): RFC 1928 `CONNECT` for clients that do
//! not speak HTTP (git over SSH, database clients), under the same policy as an HTTP `CONNECT`.
//!
//! `wire` reads and writes the protocol's bytes without I/O (public for the fuzz target).
pub mod wire;
