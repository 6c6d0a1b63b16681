//! Brokered credentials: the sandbox holds a placeholder; on a request to the credential's host,
//! egressd puts the real value in its place. The real value is kept here and in the request it is
//! put into, nowhere else: never logged, never in an error body, and scrubbed (back to the
//! placeholder) from the response of the request that carried it, so an origin that echoes its
//! request cannot hand it to the sandbox.
//!
//! A placeholder found in a request to any other host (in a header or the URI) is refused: the
//! sandbox was given it for one host only, so sending it elsewhere is an exfiltration attempt.
//! That check is an alarm, not the protection: the real value is only ever put into requests to
//! its own host, so elsewhere the placeholder is worth nothing.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::body::{Body, Frame, SizeHint};
use policy::{CredentialRule, DomainName, Policy};

/// Why a credential's real value cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialValueError {
    /// Nothing to send.
    #[error("the value is empty")]
    Empty,
    /// It would not fit in an HTTP header unchanged.
    #[error(
        "the value has a character a header value cannot hold (a line break or control character)"
    )]
    NotHeaderValue,
}

/// The real values of a policy's `[[credential]]` entries, by position in the list, as the binary
/// read them. `Debug` shows how many, never what.
#[derive(Clone, Default)]
pub struct Secrets {
    values: HashMap<usize, Bytes>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets(<{} values>)", self.values.len())
    }
}

impl Secrets {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the value of credential `index` (its position in [`Policy::credentials`]).
    pub fn insert(&mut self, index: usize, value: &str) -> Result<(), CredentialValueError> {
        if value.is_empty() {
            return Err(CredentialValueError::Empty);
        }
        if HeaderValue::from_str(value).is_err() {
            return Err(CredentialValueError::NotHeaderValue);
        }
        self.values
            .insert(index, Bytes::copy_from_slice(value.as_bytes()));
        Ok(())
    }
}

/// One generation's credentials, ready for requests.
#[derive(Default)]
pub(crate) struct Brokered {
    entries: Vec<Entry>,
}

struct Entry {
    rule: Arc<CredentialRule>,
    header: HeaderName,
    placeholder: Bytes,
    value: Option<Bytes>,
}

/// A value put into a request, and what the response gets in its place: its placeholder, or
/// filler of its length when the placeholder shares bytes with a value ([`scrubbed_as`]).
#[derive(Clone)]
pub(crate) struct Swapped {
    real: Bytes,
    placeholder: Bytes,
}

impl Brokered {
    pub(crate) fn new(policy: &Policy, secrets: &Secrets) -> Self {
        let entries = policy
            .credentials()
            .iter()
            .filter_map(|rule| {
                // The policy validated the name as a header name an HTTP token may be.
                let header = HeaderName::from_bytes(rule.header.as_bytes()).ok()?;
                Some(Entry {
                    header,
                    placeholder: Bytes::copy_from_slice(rule.placeholder.as_bytes()),
                    value: secrets.values.get(&rule.index).cloned(),
                    rule: rule.clone(),
                })
            })
            .collect();
        Self { entries }
    }

    /// The first credential whose placeholder appears in a header or in `uri_text` of a request
    /// to `name` (`None`: an IP literal) that it does not apply to.
    pub(crate) fn exfiltration(
        &self,
        name: Option<&DomainName>,
        headers: &HeaderMap,
        uri_text: &str,
    ) -> Option<&Arc<CredentialRule>> {
        self.entries
            .iter()
            .filter(|e| !name.is_some_and(|n| e.rule.applies_to(n)))
            .find(|e| {
                contains(uri_text.as_bytes(), &e.placeholder)
                    || headers
                        .values()
                        .any(|v| contains(v.as_bytes(), &e.placeholder))
            })
            .map(|e| &e.rule)
    }

    /// Puts the real value in place of the placeholder in each credential header for `name`.
    /// `Err` names a credential whose placeholder is present but whose value egressd lacks.
    pub(crate) fn swap(
        &self,
        name: &DomainName,
        headers: &mut HeaderMap,
    ) -> Result<Vec<Swapped>, Arc<CredentialRule>> {
        let mut swapped = Vec::new();
        for entry in self.entries.iter().filter(|e| e.rule.applies_to(name)) {
            let http::header::Entry::Occupied(mut occupied) = headers.entry(&entry.header) else {
                continue;
            };
            for value in occupied.iter_mut() {
                if !contains(value.as_bytes(), &entry.placeholder) {
                    continue;
                }
                let Some(real) = &entry.value else {
                    return Err(entry.rule.clone());
                };
                let replaced = replace(value.as_bytes(), &entry.placeholder, real);
                // Both parts are valid header bytes, so their concatenation is too.
                if let Ok(new) = HeaderValue::from_bytes(&replaced) {
                    *value = new;
                    swapped.push(Swapped {
                        real: real.clone(),
                        placeholder: entry.placeholder.clone(),
                    });
                }
            }
        }
        let values: Vec<Bytes> = swapped.iter().map(|s| s.real.clone()).collect();
        for swap in &mut swapped {
            swap.placeholder = scrubbed_as(&swap.real, &swap.placeholder, &values);
        }
        Ok(swapped)
    }
}

/// An origin answered a request that carried a real value with a body in a coding egressd cannot
/// scrub (`gzip`, `br`, ...): the response is refused, not decoded. Names the coding when it is a
/// known one; the origin's own spelling is never repeated (it could be the value itself).
#[derive(Debug)]
pub(crate) struct Encoded(pub(crate) &'static str);

/// The codings an [`Encoded`] names; any other is "an unknown coding".
const KNOWN_CODINGS: [&str; 6] = ["gzip", "x-gzip", "deflate", "br", "zstd", "compress"];

/// Makes the head of a response to a request that carried real values safe for the sandbox:
/// `Err` when its body is in a content or transfer coding other than `identity` and `chunked`
/// (egressd asked for `identity`; a compressed echo would carry the value past the scrubbing).
/// Otherwise the reason phrase becomes the standard one, headers that name a value lose it, and
/// every value in a header is put back as its placeholder. The body is [`Redacting`]'s.
pub(crate) fn scrub_head(
    parts: &mut http::response::Parts,
    swapped: &[Swapped],
) -> Result<(), Encoded> {
    let codings = [
        http::header::CONTENT_ENCODING,
        http::header::TRANSFER_ENCODING,
    ];
    for value in codings.iter().flat_map(|name| parts.headers.get_all(name)) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let unscrubbable = text
            .split(',')
            .map(|coding| coding.trim().to_ascii_lowercase())
            .find(|coding| !coding.is_empty() && coding != "identity" && coding != "chunked");
        if let Some(coding) = unscrubbable {
            let known = KNOWN_CODINGS.iter().find(|known| **known == coding);
            return Err(Encoded(known.copied().unwrap_or("an unknown")));
        }
    }
    // The origin's reason phrase goes nowhere: hyper then writes the standard one.
    parts.extensions.remove::<hyper::ext::ReasonPhrase>();
    scrub_headers(&mut parts.headers, swapped);
    Ok(())
}

/// Replaces every real value in `headers` with its placeholder; a header whose name holds a
/// value (names are lower case, so compared without case) is removed.
pub(crate) fn scrub_headers(headers: &mut HeaderMap, swapped: &[Swapped]) {
    let named: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            swapped.iter().any(|swap| {
                let real = swap.real.to_ascii_lowercase();
                contains(name.as_str().as_bytes(), &real)
            })
        })
        .cloned()
        .collect();
    for name in named {
        headers.remove(name);
    }
    let masker = Masker::new(swapped);
    for value in headers.values_mut() {
        if masker.occurrences(value.as_bytes()).is_empty() {
            continue;
        }
        let bytes = masker.replace(value.as_bytes());
        *value = HeaderValue::from_bytes(&bytes)
            .unwrap_or_else(|_| HeaderValue::from_static("redacted"));
    }
}

/// What a response gets in place of `real`: its placeholder, unless the placeholder could make
/// a value again with the bytes around it (it holds a value, or one of its ends is the start or
/// the end of a value: `XPH` with the placeholder `PH` would turn `XXPH` into `XPH`); then filler
/// of the value's length, which is in no value ([`filler`]).
fn scrubbed_as(real: &Bytes, placeholder: &Bytes, values: &[Bytes]) -> Bytes {
    let rebuilds = values.iter().any(|value| {
        contains(placeholder, value)
            || contains(value, placeholder)
            || (1..value.len().min(placeholder.len() + 1)).any(|n| {
                value.ends_with(&placeholder[..n])
                    || value.starts_with(&placeholder[placeholder.len() - n..])
            })
    });
    if rebuilds {
        Bytes::from(vec![filler(values); real.len()])
    } else {
        placeholder.clone()
    }
}

/// A byte in no value, for filler: `*` unless a value holds it. A value is a header value
/// (visible ASCII, space and tab, never NUL); NUL is the last resort for values that hold every
/// other candidate.
fn filler(values: &[Bytes]) -> u8 {
    std::iter::once(b'*')
        .chain(0x21..=0x7e)
        .find(|byte| values.iter().all(|v| !v.contains(byte)))
        .unwrap_or(0)
}

/// Where `needle` first occurs in `haystack` at or after `from`: the one matcher that every
/// scrubbing here (headers, bodies, WebSocket frames) uses.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle, 0).is_some()
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while let Some(at) = find(haystack, needle, i) {
        out.extend_from_slice(&haystack[i..at]);
        out.extend_from_slice(with);
        i = at + needle.len();
    }
    out.extend_from_slice(&haystack[i..]);
    out
}

/// How many bytes at the end of `bytes` must wait for the next ones before they can be passed
/// on: the longest end of `bytes` that is the start of a value (shorter than the value: a whole
/// one is an occurrence, [`Masker::releasable`]). A value that a later piece completes begins there, so nothing
/// before it can be part of one; and the bytes of a stream that cannot begin a value (an event
/// stream's closing blank line, say) are not held back at all.
fn held_back<'a>(bytes: &[u8], values: impl IntoIterator<Item = &'a Bytes>) -> usize {
    values
        .into_iter()
        .filter_map(|value| {
            (1..value.len().min(bytes.len() + 1))
                .rev()
                .find(|&n| bytes.ends_with(&value[..n]))
        })
        .max()
        .unwrap_or(0)
}

/// What a response is scrubbed of: every occurrence of a real value, found in the bytes as the
/// origin sent them (all values at once, so that one value inside or overlapping another is
/// found whole), becomes its placeholder ([`Masker::replace`], for headers and bodies) or as
/// many filler bytes ([`Masker::mask`], for bytes whose length must not change: a WebSocket
/// frame's payload, whose length its header has already said). Occurrences that overlap (two
/// values, or one value twice) become filler over all their bytes.
///
/// The filler is one ASCII byte that is in no value (`*` unless a value holds it), so text stays
/// valid UTF-8 (a value is a whole UTF-8 string, so it starts and ends on character boundaries),
/// and no value can be made of filler and the bytes around it: a scrubbed stream holds no value.
#[derive(Clone)]
pub(crate) struct Masker {
    values: Vec<Bytes>,
    /// What each value becomes in [`Masker::replace`] (its placeholder, or filler:
    /// [`scrubbed_as`]).
    replacements: Vec<Bytes>,
    filler: u8,
}

/// Where a value occurs in scrubbed bytes: `Some(i)` for one occurrence of value `i`, `None`
/// for overlapping occurrences merged into one range.
type Occurrence = (std::ops::Range<usize>, Option<usize>);

impl Masker {
    pub(crate) fn new(swapped: &[Swapped]) -> Self {
        let values: Vec<Bytes> = swapped.iter().map(|s| s.real.clone()).collect();
        let replacements = swapped.iter().map(|s| s.placeholder.clone()).collect();
        let filler = filler(&values);
        Self {
            values,
            replacements,
            filler,
        }
    }

    /// A masker for `values`, for tests elsewhere.
    #[cfg(test)]
    pub(crate) fn of(values: &[&'static str]) -> Self {
        let swapped: Vec<Swapped> = values
            .iter()
            .map(|v| Swapped {
                real: Bytes::from_static(v.as_bytes()),
                placeholder: Bytes::from_static(b"PH"),
            })
            .collect();
        Self::new(&swapped)
    }

    /// Every occurrence of every value in `bytes`, in order, overlapping ones merged.
    fn occurrences(&self, bytes: &[u8]) -> Vec<Occurrence> {
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for (index, value) in self.values.iter().enumerate() {
            let mut from = 0;
            while let Some(at) = find(bytes, value, from) {
                found.push((at, at + value.len(), index));
                from = at + 1;
            }
        }
        found.sort_unstable();
        let mut merged: Vec<Occurrence> = Vec::with_capacity(found.len());
        for (start, end, index) in found {
            match merged.last_mut() {
                Some((range, which)) if start < range.end => {
                    range.end = range.end.max(end);
                    *which = None;
                }
                _ => merged.push((start..end, Some(index))),
            }
        }
        merged
    }

    /// How many of the first bytes of `bytes` (a stream's bytes not yet passed on, as the
    /// origin sent them) can be scrubbed and passed on now: all but its end that begins a value
    /// (see [`held_back`]), and never part of an occurrence: one that reaches into that end
    /// waits whole with it.
    pub(crate) fn releasable(&self, bytes: &[u8]) -> usize {
        let upto = bytes.len() - held_back(bytes, &self.values);
        self.occurrences(bytes)
            .into_iter()
            .find(|(range, _)| range.start < upto && upto < range.end)
            .map_or(upto, |(range, _)| range.start)
    }

    /// Overwrites every occurrence of a value in `bytes` with filler.
    pub(crate) fn mask(&self, bytes: &mut [u8]) {
        for (range, _) in self.occurrences(bytes) {
            bytes[range].fill(self.filler);
        }
    }

    /// `bytes` with every occurrence of a value replaced: one value's by its replacement,
    /// overlapping ones by filler.
    pub(crate) fn replace(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        for (range, which) in self.occurrences(bytes) {
            out.extend_from_slice(&bytes[at..range.start]);
            match which.and_then(|i| self.replacements.get(i)) {
                Some(replacement) => out.extend_from_slice(replacement),
                None => out.resize(out.len() + range.len(), self.filler),
            }
            at = range.end;
        }
        out.extend_from_slice(&bytes[at..]);
        out
    }
}

/// A response body with every real value replaced by its placeholder, also across frames: the
/// last few bytes of each frame wait for the next; trailers are scrubbed like headers.
/// (Compressed bodies are not looked into: a request that carries a value asks for
/// `Accept-Encoding: identity`, and [`scrub_head`] refuses a response that is encoded anyway.)
pub(crate) struct Redacting<B> {
    inner: B,
    swapped: Vec<Swapped>,
    masker: Masker,
    /// What the origin sent that is not passed on yet, as it sent it.
    carry: BytesMut,
    pending: Option<Frame<Bytes>>,
    finished: bool,
}

impl<B> Redacting<B> {
    pub(crate) fn new(inner: B, swapped: Vec<Swapped>) -> Self {
        Self {
            inner,
            masker: Masker::new(&swapped),
            swapped,
            carry: BytesMut::new(),
            pending: None,
            finished: false,
        }
    }

    /// The first `upto` bytes of what is carried, scrubbed.
    fn release(&mut self, upto: usize) -> Bytes {
        let bytes = self.carry.split_to(upto);
        Bytes::from(self.masker.replace(&bytes))
    }
}

impl<B> Body for Redacting<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(frame) = this.pending.take() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.carry.extend_from_slice(&data);
                        let ready = this.masker.releasable(&this.carry);
                        if ready > 0 {
                            let out = this.release(ready);
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(other) => {
                        // Trailers, scrubbed like the head: whatever is held back goes first.
                        let other = match other.into_trailers() {
                            Ok(mut trailers) => {
                                scrub_headers(&mut trailers, &this.swapped);
                                Frame::trailers(trailers)
                            }
                            Err(other) => other,
                        };
                        if this.carry.is_empty() {
                            return Poll::Ready(Some(Ok(other)));
                        }
                        this.pending = Some(other);
                        let out = this.release(this.carry.len());
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                },
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => {
                    this.finished = true;
                    if !this.carry.is_empty() {
                        let out = this.release(this.carry.len());
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // An empty body says so before it is polled: over HTTP/2 the response head then ends the
        // stream (a gRPC error is such a "trailers-only" response: its status is in the head).
        (self.finished || self.inner.is_end_stream())
            && self.carry.is_empty()
            && self.pending.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // The length changes when a value and its placeholder differ in length.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    const POLICY: &str = r#"
version = 1
[[allow]]
host = "api.example.com"
inspect = true
[[allow]]
host = "*.example.net"
inspect = true
[[credential]]
host = "api.example.com"
header = "Authorization"
placeholder = "PLACEHOLDER_API"
value_env = "API"
[[credential]]
host = "*.example.net"
header = "X-Key"
placeholder = "PLACEHOLDER_NET"
value_env = "NET"
"#;

    fn brokered(with_net: bool) -> Brokered {
        let policy = Policy::parse(POLICY, "t.toml").unwrap();
        let mut secrets = Secrets::new();
        secrets.insert(0, "real-api-secret").unwrap();
        if with_net {
            secrets.insert(1, "real-net").unwrap();
        }
        assert!(!format!("{secrets:?}").contains("real"));
        Brokered::new(&policy, &secrets)
    }

    fn name(n: &str) -> DomainName {
        DomainName::parse(n).unwrap()
    }

    #[test]
    fn placeholders_are_swapped_on_their_host_only() {
        let b = brokered(true);
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer PLACEHOLDER_API"),
        );
        h.insert("x-key", HeaderValue::from_static("PLACEHOLDER_NET"));
        let swapped = b.swap(&name("api.example.com"), &mut h).unwrap();
        assert_eq!(h["authorization"], "Bearer real-api-secret");
        assert_eq!(h["x-key"], "PLACEHOLDER_NET", "not this host's credential");
        assert_eq!(swapped.len(), 1);
        let mut response = HeaderMap::new();
        response.insert(
            "x-echo",
            HeaderValue::from_static("got Bearer real-api-secret"),
        );
        scrub_headers(&mut response, &swapped);
        assert_eq!(response["x-echo"], "got Bearer PLACEHOLDER_API");
    }

    #[test]
    fn placeholders_elsewhere_are_exfiltration() {
        let b = brokered(true);
        let mut h = HeaderMap::new();
        h.insert("x-anything", HeaderValue::from_static("PLACEHOLDER_API"));
        let other = b.exfiltration(Some(&name("evil.example.org")), &h, "/");
        assert_eq!(other.map(|r| r.index), Some(0));
        assert!(
            b.exfiltration(Some(&name("api.example.com")), &h, "/")
                .is_none()
        );
        let empty = HeaderMap::new();
        let in_uri = b.exfiltration(None, &empty, "/x?t=PLACEHOLDER_NET");
        assert_eq!(in_uri.map(|r| r.index), Some(1));
        assert!(
            b.exfiltration(Some(&name("a.example.net")), &empty, "/x?t=PLACEHOLDER_NET")
                .is_none()
        );
    }

    #[test]
    fn a_missing_value_is_reported_not_sent() {
        let b = brokered(false);
        let mut h = HeaderMap::new();
        h.insert("x-key", HeaderValue::from_static("PLACEHOLDER_NET"));
        let Err(missing) = b.swap(&name("a.example.net"), &mut h) else {
            panic!("swapped without a value");
        };
        assert_eq!(missing.index, 1);
    }

    #[test]
    fn values_must_fit_a_header() {
        let mut s = Secrets::new();
        assert_eq!(s.insert(0, ""), Err(CredentialValueError::Empty));
        assert_eq!(
            s.insert(0, "a\nb"),
            Err(CredentialValueError::NotHeaderValue)
        );
    }

    #[tokio::test]
    async fn bodies_are_scrubbed_across_frames() {
        let swapped = vec![Swapped {
            real: Bytes::from_static(b"SECRET-VALUE"),
            placeholder: Bytes::from_static(b"PH"),
        }];
        let chunks = ["echo: SEC", "RET-VAL", "UE and SECRET-VALUE", " end"];
        let body = Redacting::new(Frames(chunks.into_iter()), swapped);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"echo: PH and PH end");
    }

    /// A placeholder that shares bytes with its value would rebuild the value from the bytes
    /// around it; such a value is replaced by filler of its length instead.
    #[tokio::test]
    async fn a_placeholder_that_could_rebuild_the_value_gives_way_to_filler() {
        let values = [Bytes::from_static(b"XPH")];
        for (placeholder, filler) in [
            ("PH", true),  // the end of the value: "XXPH" would become "XPH"
            ("PHX", true), // its end is the start of the value
            ("HXP", true), // its start is the end of the value
            ("X", true),   // inside the value
            ("ZZ", false),
        ] {
            let got = scrubbed_as(&values[0], &Bytes::from(placeholder), &values);
            let want: &[u8] = if filler {
                b"***"
            } else {
                placeholder.as_bytes()
            };
            assert_eq!(&got[..], want, "{placeholder}");
        }
        let swapped = vec![Swapped {
            real: values[0].clone(),
            placeholder: scrubbed_as(&values[0], &Bytes::from_static(b"PH"), &values),
        }];
        let chunks = ["XX", "PH XXP", "H"];
        let body = Redacting::new(Frames(chunks.into_iter()), swapped);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"X*** X***");
    }

    fn swapped_api() -> Vec<Swapped> {
        let b = brokered(false);
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("PLACEHOLDER_API"));
        b.swap(&name("api.example.com"), &mut h).unwrap()
    }

    #[test]
    fn a_response_head_keeps_no_trace_of_the_value() {
        let swapped = swapped_api();
        let (mut parts, ()) = http::Response::builder()
            .header("x-echo", "got real-api-secret")
            .header("x-real-api-secret", "named after it")
            .header("X-REAL-API-SECRET-too", "named after it, in upper case")
            .header("x-other", "kept")
            .body(())
            .unwrap()
            .into_parts();
        let phrase = hyper::ext::ReasonPhrase::try_from(b"OK real-api-secret".to_vec()).unwrap();
        parts.extensions.insert(phrase);
        scrub_head(&mut parts, &swapped).unwrap();
        assert!(parts.extensions.get::<hyper::ext::ReasonPhrase>().is_none());
        assert_eq!(parts.headers["x-echo"], "got PLACEHOLDER_API");
        assert_eq!(parts.headers["x-other"], "kept");
        assert_eq!(parts.headers.len(), 2, "{:?}", parts.headers);
    }

    #[test]
    fn an_encoded_answer_is_refused_without_repeating_its_coding() {
        let swapped = swapped_api();
        let cases = [
            ("content-encoding", "gzip", Some("gzip")),
            ("content-encoding", "identity, BR", Some("br")),
            ("transfer-encoding", "gzip, chunked", Some("gzip")),
            ("content-encoding", "real-api-secret", Some("an unknown")),
            ("transfer-encoding", "chunked", None),
            ("content-encoding", "identity", None),
        ];
        for (header, value, want) in cases {
            let (mut parts, ()) = http::Response::builder()
                .header(header, value)
                .body(())
                .unwrap()
                .into_parts();
            let got = scrub_head(&mut parts, &swapped).err().map(|e| e.0);
            assert_eq!(got, want, "{header}: {value}");
        }
    }

    #[tokio::test]
    async fn trailers_are_scrubbed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-echo", HeaderValue::from_static("real-api-secret"));
        trailers.insert("x-real-api-secret", HeaderValue::from_static("1"));
        let frames = vec![
            Frame::data(Bytes::from_static(b"body real-api-")),
            Frame::trailers(trailers),
        ];
        let body = Redacting::new(Listed(frames.into_iter()), swapped_api());
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["x-echo"], "PLACEHOLDER_API");
        assert_eq!(trailers.len(), 1);
        assert_eq!(&collected.to_bytes()[..], b"body real-api-");
    }

    #[test]
    fn masking_keeps_the_length_and_leaves_no_value() {
        let cases: [(&[&'static str], &str, &str); 5] = [
            (
                &["SECRET"],
                "a SECRET and SECRETSECRET.",
                "a ****** and ************.",
            ),
            (&["SECRET"], "SECRE", "SECRE"),
            // The filler is in no value: a value of stars and the byte before it cannot be
            // rebuilt from filler.
            (&["a***"], "aa***", "a!!!!"),
            (&["ab", "b*"], "abb*", "!!!!"),
            (&["é-secret"], "é é-secret é", "é ********* é"),
        ];
        for (values, input, want) in cases {
            let mut bytes = input.as_bytes().to_vec();
            Masker::of(values).mask(&mut bytes);
            assert_eq!(
                String::from_utf8(bytes).unwrap(),
                want,
                "{values:?} {input}"
            );
        }
        let masker = Masker::of(&["12345", "ab"]);
        for (bytes, held) in [
            ("x1234", 4),
            ("x123", 3),
            ("xa", 1),
            ("1a", 1),
            ("x12345", 0),
            ("data: {}\n\n", 0),
            ("", 0),
            ("1", 1),
        ] {
            let bytes = bytes.as_bytes();
            assert_eq!(masker.releasable(bytes), bytes.len() - held, "{bytes:?}");
        }
    }

    /// Values found together in the bytes as sent: one inside or overlapping another is found
    /// whole, and an occurrence that reaches into the held end waits whole with it.
    #[tokio::test]
    async fn values_that_overlap_are_scrubbed_whole() {
        let cases: [(&[&'static str], &str, &str); 3] = [
            (
                &["acme", "acme:pw-12345"],
                "key acme:pw-12345 end",
                "key ************* end",
            ),
            (&["abcd", "cdef"], "xabcdefx", "x******x"),
            (&["abcd", "cdef"], "abcd cdef", "**** ****"),
        ];
        for (values, input, want) in cases {
            let mut bytes = input.as_bytes().to_vec();
            Masker::of(values).mask(&mut bytes);
            assert_eq!(String::from_utf8(bytes).unwrap(), want, "{values:?}");
        }
        let masker = Masker::of(&["acme", "acme:pw"]);
        assert_eq!(masker.replace(b"acme:pw and acme"), b"******* and PH");
        // "cd" may begin "cdef", and "abcd" reaches into it: all of "abcd" waits.
        assert_eq!(Masker::of(&["abcd", "cdef"]).releasable(b"xabcd"), 1);
        // A body whose pieces end inside the shorter value.
        let swapped: Vec<Swapped> = ["acme", "acme:pw-12345"]
            .iter()
            .map(|v| Swapped {
                real: Bytes::from_static(v.as_bytes()),
                placeholder: Bytes::from_static(b"PH"),
            })
            .collect();
        let chunks = ["key acme", ":pw-123", "45 end acme."];
        let body = Redacting::new(Frames(chunks.into_iter()), swapped);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"key ************* end PH.");
    }

    /// A stream that goes quiet after each event (server-sent events from an API on a brokered
    /// host) gets each event whole at once: only an end that could begin a value waits.
    #[test]
    fn an_event_is_passed_on_whole_while_the_stream_goes_quiet() {
        let swapped = swapped_api();
        let mut body = Redacting::new(ThenQuiet::data("data: {\"delta\": \"hi\"}\n\n"), swapped);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) else {
            panic!("the event waits for more");
        };
        assert_eq!(frame.into_data().unwrap(), "data: {\"delta\": \"hi\"}\n\n");
        let mut body = Redacting::new(ThenQuiet::data("data: real-api"), swapped_api());
        let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) else {
            panic!("nothing went");
        };
        assert_eq!(frame.into_data().unwrap(), "data: ");
        assert!(
            Pin::new(&mut body).poll_frame(&mut cx).is_pending(),
            "the start of the value waits for what follows it"
        );
    }

    /// A body of the given frames, then nothing yet: it neither ends nor goes on.
    struct ThenQuiet(Listed);

    impl ThenQuiet {
        fn data(text: &'static str) -> Self {
            Self(Listed(
                vec![Frame::data(Bytes::from_static(text.as_bytes()))].into_iter(),
            ))
        }
    }

    impl Body for ThenQuiet {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match Pin::new(&mut self.0).poll_frame(cx) {
                Poll::Ready(None) => Poll::Pending,
                other => other,
            }
        }
    }

    /// A body of the given frames.
    struct Listed(std::vec::IntoIter<Frame<Bytes>>);

    impl Body for Listed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.next().map(Ok))
        }
    }

    /// A body of the given data frames.
    struct Frames<I>(I);

    impl<I: Iterator<Item = &'static str> + Unpin> Body for Frames<I> {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(
                self.0
                    .next()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes())))),
            )
        }
    }
}
