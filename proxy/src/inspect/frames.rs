//! The origin's WebSocket frames, scrubbed of the brokered values its upgrade request carried,
//! on their way to the sandbox (RFC 6455 §5.2). Only for an upgrade that carried a swapped
//! credential; every other WebSocket is relayed as it is (`websocket.rs`).
//!
//! Such an upgrade went to the origin without `Sec-WebSocket-Extensions` (and a `101` that names
//! one anyway is refused in `request.rs`), so every payload is plain: a frame with a reserved bit
//! set ends the relay, as do a masked frame (a server's frames are not masked; a masked payload
//! could not be read), a reserved opcode, a control frame that is fragmented or longer than 125
//! bytes, a length with its top bit set, and a continuation outside a fragmented message (or a
//! new message inside one).
//!
//! What is scrubbed, each value replaced by filler of its length ([`Masker`]) so that every
//! header's length stays true:
//! - the payloads of a message's data frames (text, binary, continuation) as one stream: a value
//!   split across two frames of one message, or across two reads, is found;
//! - each control frame's payload on its own: a ping's or pong's, a close frame's code and
//!   reason (no valid code holds a byte a value can, so a code changes only in a malformed
//!   close whose first bytes begin a value).
//!
//! Memory is bounded: a payload streams through, and only its last bytes that begin a value (at
//! most one byte fewer than the longest value) wait for the bytes after them. Those last bytes
//! of a fragment that is not its message's last wait for the next fragment's first bytes (or
//! the message's end, or the origin's),
//! and so does what follows them: the next fragment's header and any control frame the origin
//! sends between the fragments (a ping there reaches the client once the next fragment has
//! begun). At most [`MAX_WAITING`] bytes of frames wait so; more ends the relay. A frame header
//! is written as it came, and a frame only after its header.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::inspect::brokered::Masker;

/// The most bytes of frame headers and control frames that may wait behind the held last bytes
/// of a fragment.
const MAX_WAITING: usize = 64 * 1024;

const FIN: u8 = 0x80;
const RESERVED_BITS: u8 = 0x70;
const MASKED: u8 = 0x80;

/// Why a frame from the origin ended the relay.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// RSV1-3 set, and no extension was agreed that would give them a meaning.
    #[error("a frame has reserved bits set and no extension was agreed")]
    ReservedBits,
    /// An opcode RFC 6455 reserves.
    #[error("a frame has the reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// The origin masked a frame.
    #[error("a frame from the origin is masked")]
    Masked,
    /// A control frame longer than 125 bytes, or without FIN.
    #[error("a control frame is longer than 125 bytes or fragmented")]
    Control,
    /// A 64-bit length with its most significant bit set.
    #[error("a frame length has its most significant bit set")]
    Length,
    /// A continuation frame with no fragmented message to continue.
    #[error("a continuation frame outside a fragmented message")]
    Continuation,
    /// A text or binary frame before the fragmented message in progress ended.
    #[error("a new message began inside a fragmented one")]
    Interleaved,
    /// Frames waiting behind a fragment's held bytes exceeded [`MAX_WAITING`].
    #[error("too many frames wait behind an unfinished fragment")]
    Waiting,
}

/// What the bytes being read belong to.
enum Reading {
    /// A frame header, in `header[..have]`.
    Header,
    /// A data frame's payload.
    Data { remaining: u64, fin: bool },
    /// A control frame's payload, gathered in `control` after its header.
    Control { remaining: usize },
}

/// The origin→client byte stream, frame by frame, with every value masked.
pub(crate) struct FrameScrubber {
    masker: Masker,
    header: [u8; 10],
    have: usize,
    reading: Reading,
    /// A data frame without FIN was read: its message goes on in continuation frames.
    fragmented: bool,
    /// The control frame being read, header and payload.
    control: Vec<u8>,
    /// The current message's payload bytes not yet written.
    held: Vec<u8>,
    /// Frame bytes (a data frame's header, a whole control frame) to write once the first
    /// `offset` bytes of `held` have been.
    waiting: VecDeque<(usize, Vec<u8>)>,
    waiting_bytes: usize,
}

impl FrameScrubber {
    pub(crate) fn new(masker: Masker) -> Self {
        Self {
            masker,
            header: [0; 10],
            have: 0,
            reading: Reading::Header,
            fragmented: false,
            control: Vec::new(),
            held: Vec::new(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
        }
    }

    /// Reads `input`, appending what may go to the client to `out`. `Err`: the stream is not
    /// one the scrubber can follow; nothing more may be relayed.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        while !input.is_empty() {
            match &mut self.reading {
                Reading::Header => {
                    let needed = self.header_length()?;
                    let take = (needed - self.have).min(input.len());
                    self.header[self.have..self.have + take].copy_from_slice(&input[..take]);
                    self.have += take;
                    input = &input[take..];
                    if self.have == needed && self.header_length()? == needed {
                        self.begin_frame(out)?;
                    }
                }
                Reading::Data { remaining, fin } => {
                    let fin = *fin;
                    let take =
                        usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                    *remaining -= take as u64;
                    let done = *remaining == 0;
                    self.held.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if done {
                        self.end_data(fin, out);
                    } else {
                        self.release_all_but_held_back(out);
                    }
                }
                Reading::Control { remaining } => {
                    let take = (*remaining).min(input.len());
                    *remaining -= take;
                    let done = *remaining == 0;
                    self.control.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if done {
                        self.end_control(out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The origin's stream ended: everything held is written, scrubbed of what it holds whole
    /// (a value whose end never came is not one). A partial header or control frame is dropped.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        self.release(self.held.len(), out);
    }

    /// How long the header being read is, as far as its bytes so far tell (2 at first); checks
    /// each byte as soon as it is there.
    fn header_length(&self) -> Result<usize, FrameError> {
        if self.have < 2 {
            return Ok(2);
        }
        let [first, second, ..] = self.header;
        if first & RESERVED_BITS != 0 {
            return Err(FrameError::ReservedBits);
        }
        let opcode = first & 0x0f;
        if matches!(opcode, 0x3..=0x7 | 0xb..=0xf) {
            return Err(FrameError::ReservedOpcode(opcode));
        }
        if second & MASKED != 0 {
            return Err(FrameError::Masked);
        }
        let short = second & 0x7f;
        if is_control(opcode) && (short > 125 || first & FIN == 0) {
            return Err(FrameError::Control);
        }
        Ok(match short {
            126 => 4,
            127 => 10,
            _ => 2,
        })
    }

    /// The header in `header[..have]` is whole: what its frame is decides what comes next.
    fn begin_frame(&mut self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let first = self.header[0];
        let opcode = first & 0x0f;
        let fin = first & FIN != 0;
        let length = match self.have {
            4 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            10 => {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&self.header[2..10]);
                let length = u64::from_be_bytes(bytes);
                if length >> 63 != 0 {
                    return Err(FrameError::Length);
                }
                length
            }
            _ => u64::from(self.header[1] & 0x7f),
        };
        let header = self.header[..self.have].to_vec();
        self.have = 0;
        if is_control(opcode) {
            self.control = header;
            // At most 125: `header_length` checked it.
            let remaining = usize::try_from(length).unwrap_or(125);
            self.reading = Reading::Control { remaining };
            if remaining == 0 {
                self.end_control(out)?;
            }
            return Ok(());
        }
        match (opcode, self.fragmented) {
            (0, false) => return Err(FrameError::Continuation),
            (1 | 2, true) => return Err(FrameError::Interleaved),
            _ => {}
        }
        self.wait(header)?;
        self.reading = Reading::Data {
            remaining: length,
            fin,
        };
        if length == 0 {
            self.end_data(fin, out);
        } else {
            self.release_all_but_held_back(out);
        }
        Ok(())
    }

    /// A data frame's payload has all been read.
    fn end_data(&mut self, fin: bool, out: &mut Vec<u8>) {
        self.reading = Reading::Header;
        self.fragmented = !fin;
        if fin {
            // The message is whole: nothing after it can complete a value in it.
            self.release(self.held.len(), out);
        } else {
            self.release_all_but_held_back(out);
        }
    }

    /// A control frame has all been read: scrubbed on its own, it is written after what the
    /// current message holds back.
    fn end_control(&mut self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        self.reading = Reading::Header;
        // A control frame's header is two bytes (no extended length, no mask). A close frame's
        // first two payload bytes are its status code, scrubbed with the rest: no valid code
        // holds a byte a value can (a value is visible ASCII, space and tab), so only a
        // malformed close whose "code" begins a value changes there.
        let mut frame = std::mem::take(&mut self.control);
        if let Some(scrubbed) = frame.get_mut(2..) {
            self.masker.mask(scrubbed);
        }
        self.wait(frame)?;
        self.release_all_but_held_back(out);
        Ok(())
    }

    /// Queues frame bytes to go after all of `held`; bytes queued at the same place join the
    /// last entry, so that empty frames cannot make the queue long.
    fn wait(&mut self, bytes: Vec<u8>) -> Result<(), FrameError> {
        self.waiting_bytes += bytes.len();
        if self.waiting_bytes > MAX_WAITING {
            return Err(FrameError::Waiting);
        }
        let at = self.held.len();
        match self.waiting.back_mut() {
            Some((offset, queued)) if *offset == at => queued.extend_from_slice(&bytes),
            _ => self.waiting.push_back((at, bytes)),
        }
        Ok(())
    }

    /// Writes what of `held` can no longer be part of a value: all but its end that begins one
    /// ([`Masker::releasable`]).
    fn release_all_but_held_back(&mut self, out: &mut Vec<u8>) {
        let upto = self.masker.releasable(&self.held);
        self.release(upto, out);
    }

    /// Writes the first `upto` bytes of `held`, scrubbed, and the frame bytes queued among them.
    /// `upto` is the end of `held` or what [`Masker::releasable`] says: no value reaches past it.
    fn release(&mut self, upto: usize, out: &mut Vec<u8>) {
        self.masker.mask(&mut self.held[..upto]);
        let mut written = 0;
        while let Some((offset, _)) = self.waiting.front()
            && *offset <= upto
        {
            let Some((offset, bytes)) = self.waiting.pop_front() else {
                break;
            };
            out.extend_from_slice(&self.held[written..offset]);
            out.extend_from_slice(&bytes);
            self.waiting_bytes -= bytes.len();
            written = offset;
        }
        out.extend_from_slice(&self.held[written..upto]);
        self.held.drain(..upto);
        for (offset, _) in &mut self.waiting {
            *offset -= upto;
        }
    }
}

fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}

/// The origin's side of a scrubbed WebSocket: reads give the scrubbed frames, writes (the
/// client's frames) pass through. A frame the scrubber cannot follow is an
/// [`io::ErrorKind::InvalidData`] error carrying the [`FrameError`], which ends the relay.
pub(crate) struct Scrubbed<O> {
    inner: O,
    scrubber: FrameScrubber,
    input: Box<[u8]>,
    out: Vec<u8>,
    sent: usize,
    ended: bool,
}

impl<O> Scrubbed<O> {
    /// `buffer`: the size of each read from the origin.
    pub(crate) fn new(inner: O, scrubber: FrameScrubber, buffer: usize) -> Self {
        Self {
            inner,
            scrubber,
            input: vec![0; buffer.max(1)].into_boxed_slice(),
            out: Vec::new(),
            sent: 0,
            ended: false,
        }
    }
}

impl<O: AsyncRead + Unpin> AsyncRead for Scrubbed<O> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.sent < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.sent);
                buf.put_slice(&this.out[this.sent..this.sent + n]);
                this.sent += n;
                if this.sent == this.out.len() {
                    this.out.clear();
                    this.sent = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.input);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                this.scrubber.finish(&mut this.out);
                this.ended = true;
                continue;
            }
            this.scrubber
                .feed(&this.input[..n], &mut this.out)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        }
    }
}

impl<O: AsyncWrite + Unpin> AsyncWrite for Scrubbed<O> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const CLOSE: u8 = 0x8;

    const VALUE: &str = "SECRET-VALUE";
    const TEXT: u8 = 0x1;
    const BINARY: u8 = 0x2;
    const CONTINUATION: u8 = 0x0;
    const PING: u8 = 0x9;
    const PONG: u8 = 0xa;

    /// A server frame (unmasked), its length in the shortest form.
    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let form = match payload.len() {
            0..=125 => 7,
            126..=0xffff => 16,
            _ => 64,
        };
        frame_with(opcode, fin, payload, form)
    }

    /// A server frame with its length in the `form` given (7, 16 or 64 bits).
    fn frame_with(opcode: u8, fin: bool, payload: &[u8], form: u8) -> Vec<u8> {
        let mut out = vec![opcode | if fin { FIN } else { 0 }];
        match form {
            7 => out.push(payload.len() as u8),
            16 => {
                out.push(126);
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            _ => {
                out.push(127);
                out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// Splits a stream of whole server frames into (first byte, header length, payload).
    fn frames_of(mut bytes: &[u8]) -> Vec<(u8, usize, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let (header, length) = match bytes[1] & 0x7f {
                126 => (4, u16::from_be_bytes([bytes[2], bytes[3]]) as usize),
                127 => (
                    10,
                    u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                ),
                n => (2, n as usize),
            };
            assert_eq!(bytes[1] & MASKED, 0);
            frames.push((bytes[0], header, bytes[header..header + length].to_vec()));
            bytes = &bytes[header + length..];
        }
        frames
    }

    fn scrubber() -> FrameScrubber {
        FrameScrubber::new(Masker::of(&[VALUE]))
    }

    /// Feeds `stream` in pieces of `piece` bytes, then ends it.
    fn scrub(stream: &[u8], piece: usize) -> Result<Vec<u8>, FrameError> {
        scrub_with(scrubber(), stream, piece)
    }

    fn scrub_with(
        mut scrubber: FrameScrubber,
        stream: &[u8],
        piece: usize,
    ) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        for chunk in stream.chunks(piece) {
            scrubber.feed(chunk, &mut out)?;
        }
        scrubber.finish(&mut out);
        Ok(out)
    }

    const PIECES: [usize; 6] = [1, 2, 3, 7, 13, usize::MAX];

    /// Two values, one the start of the other, in a message cut anywhere: the longer is masked
    /// whole, never the shorter first and the rest of the longer passed on.
    #[test]
    fn a_value_inside_another_is_masked_whole_at_every_cut() {
        let stream = [
            frame(TEXT, false, b"key acm"),
            frame(CONTINUATION, true, b"e:pw-12345 end"),
        ]
        .concat();
        for piece in PIECES {
            let masker = Masker::of(&["acme", "acme:pw-12345"]);
            let out = scrub_with(FrameScrubber::new(masker), &stream, piece).unwrap();
            let payloads: Vec<u8> = frames_of(&out).into_iter().flat_map(|f| f.2).collect();
            assert_eq!(payloads, b"key ************* end", "{piece}");
        }
    }

    /// Empty fragments behind a held tail join one queue entry: they cannot make it long.
    #[test]
    fn empty_fragments_behind_a_held_tail_take_one_entry() {
        let mut scrubber = scrubber();
        let mut out = Vec::new();
        scrubber
            .feed(&frame(TEXT, false, b"x SECRET"), &mut out)
            .unwrap();
        for _ in 0..1_000 {
            scrubber
                .feed(&frame(CONTINUATION, false, b""), &mut out)
                .unwrap();
        }
        assert_eq!(scrubber.waiting.len(), 1);
        scrubber
            .feed(&frame(CONTINUATION, true, b"-VALUE"), &mut out)
            .unwrap();
        let frames = frames_of(&out);
        assert_eq!(frames.len(), 1_002);
        let payloads: Vec<u8> = frames.into_iter().flat_map(|f| f.2).collect();
        assert_eq!(payloads, b"x ************");
    }

    #[test]
    fn a_value_split_across_fragments_and_reads_is_masked() {
        let stream = [
            frame(TEXT, false, b"echo: SEC"),
            frame(CONTINUATION, false, b"RET-"),
            frame(CONTINUATION, true, b"VALUE, again SECRET-VALUE"),
            frame(BINARY, true, b"\x00SECRET-VALUE\xff"),
        ]
        .concat();
        for piece in PIECES {
            let out = scrub(&stream, piece).unwrap();
            assert_eq!(out.len(), stream.len(), "piece {piece}");
            let frames = frames_of(&out);
            let firsts: Vec<u8> = frames.iter().map(|f| f.0).collect();
            assert_eq!(firsts, [TEXT, CONTINUATION, FIN, FIN | BINARY]);
            let message: Vec<u8> = frames[..3].iter().flat_map(|f| f.2.clone()).collect();
            assert_eq!(
                String::from_utf8(message).unwrap(),
                "echo: ************, again ************",
                "piece {piece}"
            );
            assert_eq!(frames[3].2, b"\x00************\xff", "piece {piece}");
        }
    }

    #[test]
    fn every_length_form_is_followed() {
        let payload = |size: usize| {
            let mut bytes = vec![b'.'; size];
            // At the start, in the middle and at the very end.
            for at in [0, (size - VALUE.len()) / 2, size - VALUE.len()] {
                bytes[at..at + VALUE.len()].copy_from_slice(VALUE.as_bytes());
            }
            bytes
        };
        let cases = [(100, 7), (300, 16), (70_000, 64), (40, 16), (40, 64)];
        for (size, form) in cases {
            let stream = [
                frame_with(BINARY, true, &payload(size), form),
                frame(TEXT, true, b"after"),
            ]
            .concat();
            for piece in PIECES {
                let out = scrub(&stream, piece).unwrap();
                let frames = frames_of(&out);
                assert_eq!(frames.len(), 2, "{size} {form} {piece}");
                let (first, header, body) = &frames[0];
                assert_eq!((*first, *header), (FIN | BINARY, stream.len() - size - 7));
                assert_eq!(body.len(), size);
                assert!(!contains(body, VALUE.as_bytes()), "{size} {form} {piece}");
                assert_eq!(body.iter().filter(|b| **b == b'*').count(), 3 * VALUE.len());
                assert_eq!(frames[1].2, b"after");
            }
        }
    }

    #[test]
    fn a_ping_between_fragments_waits_for_the_held_tail_then_goes_in_order() {
        let first = frame(TEXT, false, b"abcdefghij SECR");
        let head = [first.clone(), frame(PING, true, b"ping SECRET-VALUE")].concat();
        let tail = frame(CONTINUATION, true, b"ET-VALUE end");
        let mut scrubber = scrubber();
        let mut out = Vec::new();
        scrubber.feed(&head, &mut out).unwrap();
        // The fragment's header and its bytes that cannot be part of the value went; its last
        // bytes, which begin the value, and the ping behind them wait.
        assert_eq!(out, [&first[..2], b"abcdefghij "].concat());
        scrubber.feed(&tail, &mut out).unwrap();
        let frames = frames_of(&out);
        assert_eq!(
            frames,
            [
                (TEXT, 2, b"abcdefghij ****".to_vec()),
                (FIN | PING, 2, b"ping ************".to_vec()),
                (FIN | CONTINUATION, 2, b"******** end".to_vec()),
            ]
        );
        let mut rest = Vec::new();
        scrubber.finish(&mut rest);
        assert!(rest.is_empty());
    }

    #[test]
    fn control_payloads_are_masked_on_their_own() {
        let mut close = 4001u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bad token SECRET-VALUE");
        let stream = [
            frame(PONG, true, b"SECRET-VALUE"),
            frame(PING, true, b"SECRET-"),
            frame(PING, true, b"VALUE"),
            frame(CLOSE, true, &close),
            // A malformed close whose "code" is the value's first bytes.
            frame(CLOSE, true, b"SECRET-VALUE"),
        ]
        .concat();
        for piece in PIECES {
            let frames = frames_of(&scrub(&stream, piece).unwrap());
            assert_eq!(frames[4].2, b"************");
            assert_eq!(frames[0].2, b"************");
            // Each control frame is its own: a value split across two is not one.
            assert_eq!(frames[1].2, b"SECRET-");
            assert_eq!(frames[2].2, b"VALUE");
            assert_eq!(frames[3].2[..2], 4001u16.to_be_bytes());
            assert_eq!(&frames[3].2[2..], b"bad token ************");
        }
    }

    #[test]
    fn the_held_tail_is_written_when_the_origin_ends() {
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"SECRET-VALUE");
        // A fragmented message cut by a close, then the end of the stream.
        let stream = [
            frame(TEXT, false, b"unfinished SECRET-VAL"),
            frame(CLOSE, true, &close),
        ]
        .concat();
        for piece in PIECES {
            let frames = frames_of(&scrub(&stream, piece).unwrap());
            assert_eq!(
                frames,
                [
                    (TEXT, 2, b"unfinished SECRET-VAL".to_vec()),
                    (
                        FIN | CLOSE,
                        2,
                        [&1000u16.to_be_bytes()[..], b"************"].concat()
                    ),
                ],
                "piece {piece}"
            );
        }
        // A message that ends with the value is written at once, without waiting for more.
        let mut scrubber = scrubber();
        let mut out = Vec::new();
        scrubber
            .feed(&frame(TEXT, true, b"ends SECRET-VALUE"), &mut out)
            .unwrap();
        assert_eq!(frames_of(&out)[0].2, b"ends ************");
    }

    #[test]
    fn malformed_frames_end_the_relay() {
        let masked = {
            let mut f = frame(TEXT, true, b"abcd");
            f[1] |= MASKED;
            f
        };
        let too_long = {
            let mut f = frame_with(BINARY, true, b"x", 64);
            f[2] = 0x80;
            f
        };
        let cases: [(&str, Vec<u8>, FrameError); 9] = [
            (
                "rsv1",
                frame(TEXT | 0x40, true, b"compressed"),
                FrameError::ReservedBits,
            ),
            (
                "rsv3",
                frame(TEXT | 0x10, true, b""),
                FrameError::ReservedBits,
            ),
            (
                "opcode 3",
                frame(0x3, true, b""),
                FrameError::ReservedOpcode(3),
            ),
            (
                "opcode 0xb",
                frame(0xb, true, b""),
                FrameError::ReservedOpcode(0xb),
            ),
            ("masked", masked, FrameError::Masked),
            (
                "long ping",
                frame(PING, true, &[0; 126]),
                FrameError::Control,
            ),
            (
                "fragmented ping",
                frame(PING, false, b"p"),
                FrameError::Control,
            ),
            ("length overflow", too_long, FrameError::Length),
            (
                "lone continuation",
                frame(CONTINUATION, true, b"x"),
                FrameError::Continuation,
            ),
        ];
        for (name, stream, want) in cases {
            for piece in PIECES {
                assert_eq!(scrub(&stream, piece), Err(want.clone()), "{name} {piece}");
            }
        }
        let interleaved = [frame(TEXT, false, b"a"), frame(BINARY, true, b"b")].concat();
        assert_eq!(scrub(&interleaved, 1), Err(FrameError::Interleaved));
    }

    #[test]
    fn frames_waiting_behind_a_fragment_are_bounded() {
        let mut scrubber = scrubber();
        let mut out = Vec::new();
        scrubber
            .feed(&frame(TEXT, false, b"tail SECRET"), &mut out)
            .unwrap();
        let ping = frame(PING, true, &[b'p'; 125]);
        let fits = MAX_WAITING / ping.len();
        for _ in 0..fits {
            scrubber.feed(&ping, &mut out).unwrap();
        }
        assert_eq!(scrubber.feed(&ping, &mut out), Err(FrameError::Waiting));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // A fixed pseudo-random sequence: frames of every shape, cut anywhere.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3_000 {
            // Bytes that are mostly valid heads (no reserved bits), or any bytes at all.
            let keep = [0x8f, 0x7f, 0xff][round % 3];
            let len = (next() % 300) as usize;
            let stream: Vec<u8> = (0..len).map(|_| next() as u8 & keep).collect();
            let piece = 1 + (next() % 40) as usize;
            let _ = scrub(&stream, piece);
        }
    }

    #[tokio::test]
    async fn the_origin_side_reads_scrubbed_and_writes_through() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut origin = Scrubbed::new(near, scrubber(), 16);
        let stream = [
            frame(TEXT, false, b"echo SECRET-"),
            frame(CONTINUATION, true, b"VALUE!"),
        ]
        .concat();
        far.write_all(&stream).await.unwrap();
        origin.write_all(b"client frame").await.unwrap();
        let mut up = [0; 12];
        far.read_exact(&mut up).await.unwrap();
        assert_eq!(&up, b"client frame");
        let mut down = vec![0; stream.len()];
        origin.read_exact(&mut down).await.unwrap();
        let frames = frames_of(&down);
        let message: Vec<u8> = frames.iter().flat_map(|f| f.2.clone()).collect();
        assert_eq!(message, b"echo ************!");
        far.write_all(&frame(0x3, true, b"")).await.unwrap();
        drop(far);
        let error = origin.read(&mut [0; 16]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let frame_error = error.get_ref().and_then(|e| e.downcast_ref::<FrameError>());
        assert_eq!(frame_error, Some(&FrameError::ReservedOpcode(3)));
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }
}
