//! Wire format between the engine and one worker (one socketpair per worker).
//!
//! Every message is a frame: a fixed 26-byte header followed by an opaque
//! payload (pickled bytes; the engine never looks inside):
//!
//! ```text
//!  0          8     9      10           18            26
//!  |   len    | kind| flags|    job     |   index    | payload (len - 18 bytes) ...
//!  u64 LE      u8    u8     u64 LE        u64 LE
//! ```
//!
//! `len` counts everything after itself, so a reader needs only the first
//! eight bytes to know how much to wait for. It is 64 bits wide: a payload
//! may be as large as memory allows (the stdlib's pipes take more than
//! 4 GiB too). A length is only a claim: the buffer for it is allocated
//! fallibly (a claim beyond memory is refused, not an abort) and its pages
//! are committed only as bytes arrive.

use std::fmt;
use std::io::{self, Read};

/// Bytes before the payload.
pub const HEADER_LEN: usize = 26;
/// Bytes of the length field, which counts the rest of the frame.
const LEN_FIELD: usize = 8;
/// Set in the kind byte: the payload is in shared memory (a memfd sent with
/// the frame's first byte, see `shm`); the frame's own payload is the
/// payload's length, a u64 LE.
pub const SHARED_PAYLOAD: u8 = 0x80;
/// Payload bytes of a shared-memory frame: the length of the shared payload.
pub const SHARED_FRAME_PAYLOAD: usize = 8;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    // engine -> worker
    /// Pickled function for `job`; `flags` holds the [`CallMode`].
    Func = 1,
    /// One task: pickled arguments (or a chunk of them) of `job`, number `index`.
    Task = 2,
    /// The job is finished: drop its cached function.
    Forget = 3,
    /// Finish the current task, then exit cleanly.
    Exit = 4,
    /// Spawn only: pickled preparation data for `__main__`, then the setup.
    Prepare = 5,
    /// Spawn and forkserver: pickled (initializer, initargs, ...).
    Setup = 6,
    /// Once the worker is ready, a shared-memory frame whose memfd holds
    /// the count of tasks it has begun (see `tally`).
    Tally = 7,
    // worker -> engine
    /// The worker is initialised and takes tasks; `index` is its pid.
    Ready = 10,
    /// Outcome of task `index` of `job`; `flags` is a [`ResultStatus`].
    Result = 11,
    /// The worker exits after this frame (payload: UTF-8 reason) and starts
    /// none of the tasks it was sent after its last result.
    Retiring = 12,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Func,
            2 => Kind::Task,
            3 => Kind::Forget,
            4 => Kind::Exit,
            5 => Kind::Prepare,
            6 => Kind::Setup,
            7 => Kind::Tally,
            10 => Kind::Ready,
            11 => Kind::Result,
            12 => Kind::Retiring,
            _ => return None,
        })
    }
}

/// How the worker applies a job's function to one task's payload.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallMode {
    /// payload = (args, kwds); one result.
    Apply = 0,
    /// payload = list of items; results = [f(x) for x in items].
    Map = 1,
    /// payload = list of tuples; results = [f(*x) for x in items].
    Starmap = 2,
}

impl CallMode {
    pub fn from_u8(v: u8) -> Option<CallMode> {
        Some(match v {
            0 => CallMode::Apply,
            1 => CallMode::Map,
            2 => CallMode::Starmap,
            _ => return None,
        })
    }
}

/// Outcome of one task, as carried in a `Result` frame's flags and as kept in
/// a job's result list.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultStatus {
    /// payload = pickled return value.
    Ok = 0,
    /// payload = pickled exception (with its remote traceback).
    Raised = 1,
    /// payload = UTF-8 text: the function raised and its exception could not
    /// be pickled; the text names its type, message and traceback.
    RaisedUnpicklable = 2,
    /// payload = pickled `MaybeEncodingError`: the result could not be pickled.
    EncodingError = 3,
    /// Engine-made: the worker running this task died. payload = UTF-8 message.
    WorkerLost = 4,
    /// Engine-made: the pool broke or was terminated first. payload = UTF-8 message.
    PoolBroken = 5,
    /// Engine-made: the task ran past `task_timeout`; its worker was killed.
    /// payload = UTF-8 message.
    TimedOut = 6,
    /// Made by the Python side: the task never left the parent (its input
    /// raised, or it could not be pickled); the exception stays there.
    LocalError = 7,
    /// Engine-made: the task was cancelled before it was sent to a worker.
    Cancelled = 8,
    /// payload = a pickled return value whose large buffers travel out of
    /// band: a header with the lengths, the pickle stream, then each buffer
    /// (see `_pickling.dumps_result`). The engine treats it as `Ok`.
    OkOutOfBand = 9,
    /// payload = a list made only of ints that fit 64 bits, or only of
    /// floats, packed (see `python::packed`). The engine treats it as `Ok`.
    OkPacked = 10,
}

impl ResultStatus {
    pub fn from_u8(v: u8) -> Option<ResultStatus> {
        Some(match v {
            0 => ResultStatus::Ok,
            1 => ResultStatus::Raised,
            2 => ResultStatus::RaisedUnpicklable,
            3 => ResultStatus::EncodingError,
            4 => ResultStatus::WorkerLost,
            5 => ResultStatus::PoolBroken,
            6 => ResultStatus::TimedOut,
            7 => ResultStatus::LocalError,
            8 => ResultStatus::Cancelled,
            9 => ResultStatus::OkOutOfBand,
            10 => ResultStatus::OkPacked,
            _ => return None,
        })
    }

    /// Whether a worker may report it; the others are the engine's or the
    /// parent's own (a worker sending one breaks the protocol).
    pub fn sent_by_workers(self) -> bool {
        matches!(
            self,
            ResultStatus::Ok
                | ResultStatus::OkOutOfBand
                | ResultStatus::OkPacked
                | ResultStatus::Raised
                | ResultStatus::RaisedUnpicklable
                | ResultStatus::EncodingError
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    /// The payload is in shared memory; `payload` holds its length.
    pub shared: bool,
    pub flags: u8,
    pub job: u64,
    pub index: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ProtocolError {
    UnknownKind(u8),
    /// A length this process cannot allocate a buffer for.
    TooLong(u64),
    TooShort(u64),
    /// A shared-memory frame whose own payload is not a length.
    BadShared(usize),
    /// A shared-memory frame whose memory could not be used: why.
    SharedMemory(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            ProtocolError::TooLong(n) => {
                write!(
                    f,
                    "a frame of {n} bytes, more than this process can allocate"
                )
            }
            ProtocolError::TooShort(n) => write!(f, "frame length {n} is shorter than a header"),
            ProtocolError::SharedMemory(why) => write!(f, "{why}"),
            ProtocolError::BadShared(n) => {
                write!(
                    f,
                    "a shared-memory frame with {n} payload bytes instead of its length"
                )
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The header bytes for a frame whose payload is `payload_len` long.
pub fn header(kind: Kind, flags: u8, job: u64, index: u64, payload_len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let len = (HEADER_LEN - LEN_FIELD + payload_len) as u64;
    h[0..8].copy_from_slice(&len.to_le_bytes());
    h[8] = kind as u8;
    h[9] = flags;
    h[10..18].copy_from_slice(&job.to_le_bytes());
    h[18..26].copy_from_slice(&index.to_le_bytes());
    h
}

/// The whole frame announcing a payload of `len` bytes in shared memory
/// (the memfd goes with its first byte).
pub fn shared_frame(kind: Kind, flags: u8, job: u64, index: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + SHARED_FRAME_PAYLOAD);
    encode_into(
        &mut out,
        kind,
        flags,
        job,
        index,
        &(len as u64).to_le_bytes(),
    );
    out[8] |= SHARED_PAYLOAD;
    out
}

/// The shared payload's length a shared-memory frame carries.
pub fn shared_len(payload: &[u8]) -> Option<usize> {
    let bytes: [u8; SHARED_FRAME_PAYLOAD] = payload.try_into().ok()?;
    usize::try_from(u64::from_le_bytes(bytes)).ok()
}

/// Appends one whole frame to `out`.
pub fn encode_into(out: &mut Vec<u8>, kind: Kind, flags: u8, job: u64, index: u64, payload: &[u8]) {
    out.extend_from_slice(&header(kind, flags, job, index, payload.len()));
    out.extend_from_slice(payload);
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]))
}

/// Parses the header; returns it and the payload length. The length is
/// checked only against the address space here; whether a buffer of that
/// size can be had is for the allocation to say.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(FrameHeader, usize), ProtocolError> {
    let len = le_u64(&h[0..8]);
    if len < (HEADER_LEN - LEN_FIELD) as u64 {
        return Err(ProtocolError::TooShort(len));
    }
    let plen = usize::try_from(len - (HEADER_LEN - LEN_FIELD) as u64)
        .ok()
        .filter(|n| *n <= isize::MAX as usize)
        .ok_or(ProtocolError::TooLong(len))?;
    let kind = Kind::from_u8(h[8] & !SHARED_PAYLOAD).ok_or(ProtocolError::UnknownKind(h[8]))?;
    let shared = h[8] & SHARED_PAYLOAD != 0;
    if shared && plen != SHARED_FRAME_PAYLOAD {
        return Err(ProtocolError::BadShared(plen));
    }
    let header = FrameHeader {
        kind,
        shared,
        flags: h[9],
        job: le_u64(&h[10..18]),
        index: le_u64(&h[18..26]),
    };
    Ok((header, plen))
}

/// Header fields of a frame, without its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: Kind,
    /// The payload is in shared memory (see `SHARED_PAYLOAD`).
    pub shared: bool,
    pub flags: u8,
    pub job: u64,
    pub index: u64,
}

/// Least a `read_from` asks the stream for: many small frames per syscall.
const MIN_READ: usize = 64 * 1024;
/// Payloads this large are read into a buffer of their own and handed out
/// without a copy.
pub const LARGE_FRAME: usize = 1 << 20;

/// A large frame being received into its own buffer.
struct LargeFrame {
    header: FrameHeader,
    data: Vec<u8>,
    filled: usize,
}

/// Incremental decoder for a stream: bytes come in (`feed`, or `read_from` a
/// socket straight into its buffer), whole frames come out. The buffer's
/// initialised length is kept, so reading into it costs no zero-filling after
/// the first growth.
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    large: Option<LargeFrame>,
    /// The last large payload handed out by reference (kept until the next call).
    handed_out: Vec<u8>,
    /// The last `read_from` got less than it had room for: the stream had
    /// nothing more at that moment, so another read would only say so.
    drained: bool,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes room for at least `extra` more bytes after `end`.
    fn reserve(&mut self, extra: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.end + extra > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end + extra > self.buf.len() {
            self.buf.resize(self.end + extra, 0);
        }
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        if let Some(l) = self.large.as_mut() {
            let n = (l.data.len() - l.filled).min(data.len());
            l.data[l.filled..l.filled + n].copy_from_slice(&data[..n]);
            l.filled += n;
            data = &data[n..];
        }
        self.reserve(data.len());
        self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// If the next frame is large, moves it to a buffer of its own.
    fn begin_large(&mut self) -> Result<(), ProtocolError> {
        if self.large.is_some() || self.pending() < HEADER_LEN {
            return Ok(());
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        let (header, plen) = parse_header(&h)?;
        if plen < LARGE_FRAME {
            return Ok(());
        }
        let body = self.start + HEADER_LEN;
        let have = (self.end - body).min(plen);
        // A recycled buffer when one is kept: its pages are in place already.
        let mut data = crate::engine::buffers::try_take(plen).ok_or(ProtocolError::TooLong(
            (HEADER_LEN - LEN_FIELD + plen) as u64,
        ))?;
        data[..have].copy_from_slice(&self.buf[body..body + have]);
        self.start = body + have;
        self.large = Some(LargeFrame {
            header,
            data,
            filled: have,
        });
        Ok(())
    }

    /// The large frame, if it is complete.
    fn take_large(&mut self) -> Option<(FrameHeader, Vec<u8>)> {
        match &self.large {
            Some(l) if l.filled == l.data.len() => self.large.take().map(|l| (l.header, l.data)),
            _ => None,
        }
    }

    /// One `read` from `r` into the buffer, sized for the frame being
    /// received (at least 64 KiB). Returns what `read` returned.
    pub fn read_from<R: Read>(&mut self, r: &mut R) -> io::Result<usize> {
        self.begin_large()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if let Some(l) = self.large.as_mut() {
            if l.filled < l.data.len() {
                let room = l.data.len() - l.filled;
                let n = r.read(&mut l.data[l.filled..])?;
                l.filled += n;
                self.drained = n < room;
                return Ok(n);
            }
        }
        let want = self.wanted().max(MIN_READ);
        self.reserve(want);
        let room = self.buf.len() - self.end;
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        self.drained = n < room;
        Ok(n)
    }

    /// Whether the last `read_from` found the stream drained (see `drained`).
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Bytes of a frame not yet complete are held (call after taking every
    /// complete frame).
    pub fn mid_frame(&self) -> bool {
        self.large.is_some() || self.pending() > 0
    }

    /// How many more bytes the frame being received needs (0 if unknown).
    pub fn wanted(&self) -> usize {
        if let Some(l) = &self.large {
            return l.data.len() - l.filled;
        }
        let avail = self.pending();
        if avail < HEADER_LEN {
            return 0;
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        match parse_header(&h) {
            Ok((_, plen)) => (HEADER_LEN + plen).saturating_sub(avail),
            Err(_) => 0,
        }
    }

    /// The next complete frame, its payload borrowed from the buffer.
    /// The payload of the large frame `next_frame_ref` handed out last, to
    /// keep (an empty vector if the last frame was not a large one).
    pub fn take_handed_out(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.handed_out)
    }

    pub fn next_frame_ref(&mut self) -> Result<Option<(FrameHeader, &[u8])>, ProtocolError> {
        self.begin_large()?;
        if self.large.is_some() {
            return Ok(match self.take_large() {
                Some((header, data)) => {
                    self.handed_out = data;
                    Some((header, &self.handed_out[..]))
                }
                None => None,
            });
        }
        self.handed_out = Vec::new();
        if self.pending() < HEADER_LEN {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        let (header, plen) = parse_header(&h)?;
        if self.pending() < HEADER_LEN + plen {
            return Ok(None);
        }
        let body = self.start + HEADER_LEN;
        self.start = body + plen;
        Ok(Some((header, &self.buf[body..body + plen])))
    }

    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        self.begin_large()?;
        if self.large.is_some() {
            // Large payloads move out whole, without a copy.
            return Ok(self.take_large().map(|(h, payload)| Frame {
                kind: h.kind,
                shared: h.shared,
                flags: h.flags,
                job: h.job,
                index: h.index,
                payload,
            }));
        }
        Ok(self.next_frame_ref()?.map(|(h, payload)| Frame {
            kind: h.kind,
            shared: h.shared,
            flags: h.flags,
            job: h.job,
            index: h.index,
            payload: payload.to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_arbitrary_pieces() {
        let mut wire = Vec::new();
        encode_into(&mut wire, Kind::Func, CallMode::Starmap as u8, 7, 0, b"f");
        encode_into(&mut wire, Kind::Task, 0, 7, 3, &vec![9u8; 1000]);
        encode_into(&mut wire, Kind::Exit, 0, 0, 0, b"");
        for piece in [1usize, 5, 26, 27, 4096] {
            let mut dec = FrameDecoder::new();
            let mut frames = Vec::new();
            for chunk in wire.chunks(piece) {
                dec.feed(chunk);
                while let Some(f) = dec.next_frame().expect("valid") {
                    frames.push(f);
                }
            }
            assert_eq!(frames.len(), 3, "piece size {piece}");
            assert_eq!(frames[0].kind, Kind::Func);
            assert_eq!(frames[0].flags, 2);
            assert_eq!(frames[0].payload, b"f");
            assert_eq!((frames[1].job, frames[1].index), (7, 3));
            assert_eq!(frames[1].payload.len(), 1000);
            assert_eq!(frames[2].kind, Kind::Exit);
            assert!(frames[2].payload.is_empty());
            assert_eq!(dec.pending(), 0);
        }
    }

    #[test]
    fn read_from_a_stream_in_pieces() {
        let mut wire = Vec::new();
        for i in 0..100u64 {
            encode_into(
                &mut wire,
                Kind::Result,
                0,
                1,
                i,
                &vec![i as u8; (i * 37) as usize],
            );
        }
        encode_into(&mut wire, Kind::Result, 0, 1, 100, &vec![7u8; 300_000]);
        let mut src = std::io::Cursor::new(wire);
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        while dec.read_from(&mut src).expect("read") > 0 {
            while let Some(f) = dec.next_frame().expect("frame") {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 101);
        assert!(got
            .iter()
            .take(100)
            .enumerate()
            .all(|(i, f)| f.payload.len() == i * 37));
        assert_eq!(got[100].payload.len(), 300_000);
        assert_eq!(dec.pending(), 0);
    }

    #[test]
    fn large_frames_arrive_whole_through_feed_and_read() {
        let mut wire = Vec::new();
        encode_into(&mut wire, Kind::Result, 0, 1, 0, b"small");
        encode_into(&mut wire, Kind::Result, 0, 1, 1, &vec![3u8; 3 << 20]);
        encode_into(&mut wire, Kind::Result, 0, 1, 2, b"after");
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for piece in wire.chunks(100_000) {
            dec.feed(piece);
            while let Some(f) = dec.next_frame().expect("frame") {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].payload.len(), 3 << 20);
        assert!(got[1].payload.iter().all(|b| *b == 3));
        assert_eq!(got[2].payload, b"after");

        let mut src = std::io::Cursor::new(wire);
        let mut dec = FrameDecoder::new();
        let mut sizes = Vec::new();
        while dec.read_from(&mut src).expect("read") > 0 {
            while let Some((_, p)) = dec.next_frame_ref().expect("frame") {
                sizes.push(p.len());
            }
        }
        assert_eq!(sizes, vec![5, 3 << 20, 5]);
    }

    #[test]
    fn wanted_reports_missing_bytes() {
        let mut wire = Vec::new();
        encode_into(&mut wire, Kind::Result, 0, 1, 2, &[0u8; 100]);
        let mut dec = FrameDecoder::new();
        dec.feed(&wire[..30]);
        assert_eq!(dec.wanted(), wire.len() - 30);
        assert_eq!(dec.next_frame(), Ok(None));
    }

    #[test]
    fn rejects_unknown_kind_and_short_length() {
        let mut wire = header(Kind::Task, 0, 0, 0, 0).to_vec();
        wire[8] = 99;
        let mut dec = FrameDecoder::new();
        dec.feed(&wire);
        assert_eq!(dec.next_frame(), Err(ProtocolError::UnknownKind(99)));

        let mut short = header(Kind::Task, 0, 0, 0, 0).to_vec();
        short[0..8].copy_from_slice(&3u64.to_le_bytes());
        let mut dec = FrameDecoder::new();
        dec.feed(&short);
        assert_eq!(dec.next_frame(), Err(ProtocolError::TooShort(3)));
    }

    #[test]
    fn lengths_past_four_gib_survive_the_header() {
        let h = header(Kind::Result, 3, 7, 9, (5 << 30) + 1);
        let (parsed, plen) = parse_header(&h).expect("header");
        assert_eq!(
            (parsed.kind, parsed.flags, parsed.job, parsed.index),
            (Kind::Result, 3, 7, 9)
        );
        assert!(!parsed.shared);
        assert_eq!(plen, (5 << 30) + 1);
    }

    #[test]
    fn a_shared_frame_carries_only_its_length() {
        let wire = shared_frame(Kind::Result, 9, 4, 2, 8 << 20);
        let mut dec = FrameDecoder::new();
        dec.feed(&wire);
        let f = dec.next_frame().expect("frame").expect("whole");
        assert!(f.shared);
        assert_eq!((f.kind, f.flags, f.job, f.index), (Kind::Result, 9, 4, 2));
        assert_eq!(shared_len(&f.payload), Some(8 << 20));
        // Anything but a length with the shared bit is refused.
        let mut bad = header(Kind::Result, 0, 1, 0, 3).to_vec();
        bad.extend_from_slice(b"abc");
        bad[8] |= SHARED_PAYLOAD;
        let mut dec = FrameDecoder::new();
        dec.feed(&bad);
        assert_eq!(dec.next_frame(), Err(ProtocolError::BadShared(3)));
    }

    #[test]
    fn a_length_beyond_memory_is_refused_not_fatal() {
        for claim in [u64::MAX, 1u64 << 62] {
            let mut wire = header(Kind::Result, 0, 1, 0, 0).to_vec();
            wire[0..8].copy_from_slice(&claim.to_le_bytes());
            let mut dec = FrameDecoder::new();
            dec.feed(&wire);
            assert_eq!(dec.next_frame(), Err(ProtocolError::TooLong(claim)));
        }
    }

    #[test]
    fn enums_round_trip() {
        for k in [1u8, 2, 3, 4, 5, 6, 10, 11, 12] {
            assert_eq!(Kind::from_u8(k).map(|k| k as u8), Some(k));
        }
        for s in 0u8..=10 {
            assert_eq!(ResultStatus::from_u8(s).map(|s| s as u8), Some(s));
        }
        assert_eq!(CallMode::from_u8(3), None);
    }
}
