//! The wire frame and its streaming decoder.
//!
//! ```text
//! offset size field
//!      0    4 magic        b"SEPI"
//!      4    2 version      protocol version (negotiated by hello)
//!      6    2 msg_type     see `msg::MsgType`
//!      8    4 flags        FLAG_MAC: a 16-byte MAC follows the data
//!     12    8 txid         request id, echoed by the reply
//!     20    4 body_len     rkyv bytes, ≤ limits::frame_body_bytes_max
//!     24    4 data_len     data segment, ≤ limits::frame_data_bytes_max
//!     28    4 crc32        over bytes 0..28, the body and the data
//!     32      body (rkyv archive), then data, then the optional MAC
//! ```
//!
//! What the decoder guarantees before anyone touches a body: the magic and
//! version are ours, the message type is known, both lengths are within the
//! limits (checked on the 32 header bytes, before any allocation), the
//! crc32 over header, body and data matches, and — once a session key is
//! installed — the MAC verifies. The body itself is then validated by rkyv's
//! bytecheck when a message is decoded (`msg::decode`), so untrusted bytes
//! never reach an `assert!` or an unchecked read.
//!
//! Zero copy: the data segment of a frame is read into a buffer the caller
//! allocates (`DataAlloc`), e.g. an OSD shard's aligned DMA buffer. A shell
//! that reads the socket through [`FrameDecoder::read_buf`] /
//! [`FrameDecoder::advance`] lands the payload in that buffer with no copy;
//! [`FrameDecoder::feed`] takes bytes in any split (one copy, for staging
//! buffers, tests and fuzzing).

use crate::limits;

/// The per-frame MAC after authentication (`auth::mac::SessionKey`
/// implements it). A trait so the frame layer does not depend on how keys
/// are made.
pub trait FrameMac: Send + Sync {
    /// The tag over the concatenation of `parts`.
    fn frame_mac(&self, parts: &[&[u8]]) -> [u8; MAC_BYTES];
    /// Constant-time check of `tag`.
    fn verify_frame_mac(&self, parts: &[&[u8]], tag: &[u8; MAC_BYTES]) -> bool;
}

pub const MAGIC: [u8; 4] = *b"SEPI";
/// The protocol version this build speaks (the highest it accepts).
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest version this build accepts.
pub const PROTOCOL_VERSION_MIN: u16 = 1;
pub const HEADER_BYTES: usize = 32;
pub const MAC_BYTES: usize = 16;

/// A MAC (keyed BLAKE3, 128 bits, with the session key) follows the data segment.
pub const FLAG_MAC: u32 = 1;
/// Flags this build understands; any other bit is an error.
pub const FLAGS_KNOWN: u32 = FLAG_MAC;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("protocol version {0} not supported ({PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION})")]
    BadVersion(u16),
    #[error("unknown message type {0}")]
    UnknownType(u16),
    #[error("unknown flag bits {0:#x}")]
    UnknownFlags(u32),
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLong { what: &'static str, len: u64, max: u64 },
    #[error("crc mismatch: header says {expected:#010x}, frame hashes to {actual:#010x}")]
    BadCrc { expected: u32, actual: u32 },
    #[error("frame MAC does not verify")]
    BadMac,
    #[error("frame without a MAC on an authenticated connection")]
    MissingMac,
    #[error("the data buffer allocator returned {got} bytes for a {need}-byte segment")]
    ShortDataBuffer { need: usize, got: usize },
    #[error("body failed validation: {0}")]
    BadBody(String),
    #[error("body says message type {body}, header says {header}")]
    TypeMismatch { header: u16, body: u16 },
}

/// The fixed header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub msg_type: u16,
    pub flags: u32,
    pub txid: u64,
    pub body_len: u32,
    pub data_len: u32,
    pub crc: u32,
}

impl Header {
    /// Writes the 28 bytes the crc covers (everything but the crc).
    fn write_prefix(&self, out: &mut [u8; HEADER_BYTES]) {
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6..8].copy_from_slice(&self.msg_type.to_le_bytes());
        out[8..12].copy_from_slice(&self.flags.to_le_bytes());
        out[12..20].copy_from_slice(&self.txid.to_le_bytes());
        out[20..24].copy_from_slice(&self.body_len.to_le_bytes());
        out[24..28].copy_from_slice(&self.data_len.to_le_bytes());
    }

    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        self.write_prefix(&mut out);
        out[28..32].copy_from_slice(&self.crc.to_le_bytes());
        out
    }

    /// Parses and checks the header: every check that needs no body.
    pub fn parse(bytes: &[u8; HEADER_BYTES], known_type: impl Fn(u16) -> bool) -> Result<Header, FrameError> {
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let h = Header {
            version: u16_at(4),
            msg_type: u16_at(6),
            flags: u32_at(8),
            txid: u64::from(u32_at(12)) | (u64::from(u32_at(16)) << 32),
            body_len: u32_at(20),
            data_len: u32_at(24),
            crc: u32_at(28),
        };
        if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&h.version) {
            return Err(FrameError::BadVersion(h.version));
        }
        if h.flags & !FLAGS_KNOWN != 0 {
            return Err(FrameError::UnknownFlags(h.flags & !FLAGS_KNOWN));
        }
        if !known_type(h.msg_type) {
            return Err(FrameError::UnknownType(h.msg_type));
        }
        check_len("frame body", h.body_len as usize, limits::frame_body_bytes_max)?;
        check_len("data segment", h.data_len as usize, limits::frame_data_bytes_max)?;
        Ok(h)
    }
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), FrameError> {
    if len > max {
        return Err(FrameError::TooLong { what, len: len as u64, max: max as u64 });
    }
    Ok(())
}

/// Encodes one frame: header, body, data and (with a key) the MAC, as the
/// slices to write (`writev`-style: the data segment is not copied).
pub struct EncodedFrame<'d> {
    pub header: [u8; HEADER_BYTES],
    pub body: rkyv::util::AlignedVec<16>,
    pub data: &'d [u8],
    pub mac: Option<[u8; MAC_BYTES]>,
}

impl EncodedFrame<'_> {
    pub fn len(&self) -> usize {
        HEADER_BYTES + self.body.len() + self.data.len() + self.mac.map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the whole frame to `out`: a small frame goes to the socket
    /// in one write (one TCP segment, one wakeup of the peer) instead of
    /// one per part; copying a few KiB is far cheaper than a syscall.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.body);
        out.extend_from_slice(self.data);
        if let Some(mac) = &self.mac {
            out.extend_from_slice(mac);
        }
    }

    /// The frame as one contiguous byte vector (tests, small frames).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.header);
        v.extend_from_slice(&self.body);
        v.extend_from_slice(self.data);
        if let Some(mac) = &self.mac {
            v.extend_from_slice(mac);
        }
        v
    }
}

/// Builds a frame around an already archived body. Fails only if a length
/// is over its limit (our own sender must never produce such a frame, but
/// the error is cheaper than a crash in production).
pub fn encode_frame<'d>(
    msg_type: u16,
    txid: u64,
    body: rkyv::util::AlignedVec<16>,
    data: &'d [u8],
    key: Option<&dyn FrameMac>,
) -> Result<EncodedFrame<'d>, FrameError> {
    encode_frame_with_data_crc(msg_type, txid, body, data, None, key)
}

/// [`encode_frame`], given the crc32 of `data` when the caller has it
/// already (a store keeps one per block): the frame's crc is then combined
/// from it instead of reading the data again. A wrong `data_crc` makes the
/// peer refuse the frame.
pub fn encode_frame_with_data_crc<'d>(
    msg_type: u16,
    txid: u64,
    body: rkyv::util::AlignedVec<16>,
    data: &'d [u8],
    data_crc: Option<u32>,
    key: Option<&dyn FrameMac>,
) -> Result<EncodedFrame<'d>, FrameError> {
    check_len("frame body", body.len(), limits::frame_body_bytes_max)?;
    check_len("data segment", data.len(), limits::frame_data_bytes_max)?;
    let mut header = Header {
        version: PROTOCOL_VERSION,
        msg_type,
        flags: if key.is_some() { FLAG_MAC } else { 0 },
        txid,
        body_len: body.len() as u32,
        data_len: data.len() as u32,
        crc: 0,
    };
    let mut bytes = [0u8; HEADER_BYTES];
    header.write_prefix(&mut bytes);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..28]);
    crc.update(&body);
    match data_crc {
        Some(c) => {
            debug_assert_eq!(c, crc32fast::hash(data), "the caller's data crc");
            crc.combine(&crc32fast::Hasher::new_with_initial_len(c, data.len() as u64));
        }
        None => crc.update(data),
    }
    header.crc = crc.finalize();
    let bytes = header.to_bytes();
    let mac = key.map(|k| k.frame_mac(&[&bytes, &body, data]));
    Ok(EncodedFrame { header: bytes, body, data, mac })
}

/// A received, checked frame. `data` is the caller's buffer; only its first
/// `header.data_len` bytes belong to the frame.
pub struct Frame<B> {
    pub header: Header,
    pub body: rkyv::util::AlignedVec<16>,
    pub data: Option<B>,
}

impl<B: AsRef<[u8]>> Frame<B> {
    /// The data segment (empty when the frame has none).
    pub fn data(&self) -> &[u8] {
        match &self.data {
            Some(b) => &b.as_ref()[..self.header.data_len as usize],
            None => &[],
        }
    }
}

impl Frame<Vec<u8>> {
    /// The data segment, moved out instead of copied (the frame keeps an
    /// empty one).
    pub fn take_data(&mut self) -> Vec<u8> {
        let mut data = self.data.take().unwrap_or_default();
        data.truncate(self.header.data_len as usize);
        data
    }
}

/// Allocates the buffer a data segment is read into. The OSD passes one that
/// returns aligned DMA memory; it may return more than asked (rounded up).
pub trait DataAlloc {
    type Buf: AsRef<[u8]> + AsMut<[u8]>;
    fn alloc(&mut self, len: usize) -> Self::Buf;
    /// Bytes `buf` can take (checked against the segment's length).
    fn room(buf: &Self::Buf) -> usize {
        buf.as_ref().len()
    }
    /// Writes `bytes` at `at`: every byte before `at` was written, by
    /// this or through the window of [`Self::ready`].
    fn put(buf: &mut Self::Buf, at: usize, bytes: &[u8]) {
        buf.as_mut()[at..at + bytes.len()].copy_from_slice(bytes);
    }
    /// Makes the first `len` bytes of `buf` a writable slice (for
    /// [`FrameDecoder::read_buf`]).
    fn ready(_buf: &mut Self::Buf, _len: usize) {}
}

/// The default allocator: a `Vec` that [`FrameDecoder::feed`] appends to,
/// so the bytes are copied once and never zeroed first (zeroing went
/// through the allocator's slow calloc path: 1.5% of an OSD's samples at
/// depth-32 writes). Zero-filled only if the caller asks for
/// [`FrameDecoder::read_buf`] while receiving its data.
#[derive(Default)]
pub struct VecAlloc;

impl DataAlloc for VecAlloc {
    type Buf = Vec<u8>;
    fn alloc(&mut self, len: usize) -> Vec<u8> {
        Vec::with_capacity(len)
    }
    fn room(buf: &Vec<u8>) -> usize {
        buf.capacity()
    }
    fn put(buf: &mut Vec<u8>, at: usize, bytes: &[u8]) {
        if buf.len() == at {
            buf.extend_from_slice(bytes);
        } else {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
        }
    }
    fn ready(buf: &mut Vec<u8>, len: usize) {
        if buf.len() < len {
            buf.resize(len, 0);
        }
    }
}

enum State<B> {
    Header { have: usize },
    Body { header: Header, have: usize },
    Data { header: Header, buf: B, have: usize },
    Mac { header: Header, data: Option<B>, have: usize },
    /// A frame error happened; the connection must be closed.
    Failed,
}

/// The streaming, sans-IO frame decoder of one connection.
pub struct FrameDecoder<A: DataAlloc = VecAlloc> {
    alloc: A,
    state: State<A::Buf>,
    header_bytes: [u8; HEADER_BYTES],
    body: rkyv::util::AlignedVec<16>,
    mac: [u8; MAC_BYTES],
    crc: crc32fast::Hasher,
    key: Option<Box<dyn FrameMac>>,
    known_type: fn(u16) -> bool,
}

impl FrameDecoder<VecAlloc> {
    pub fn new(known_type: fn(u16) -> bool) -> Self {
        Self::with_alloc(VecAlloc, known_type)
    }
}

impl<A: DataAlloc> FrameDecoder<A> {
    pub fn with_alloc(alloc: A, known_type: fn(u16) -> bool) -> Self {
        FrameDecoder {
            alloc,
            state: State::Header { have: 0 },
            header_bytes: [0; HEADER_BYTES],
            body: rkyv::util::AlignedVec::new(),
            mac: [0; MAC_BYTES],
            crc: crc32fast::Hasher::new(),
            key: None,
            known_type,
        }
    }

    /// After authentication every frame must carry a MAC under this key.
    pub fn set_session_key(&mut self, key: Box<dyn FrameMac>) {
        self.key = Some(key);
    }

    /// Where the next received bytes go: read the socket straight into this
    /// slice, then call [`Self::advance`]. While a data segment is being
    /// received this is a window of the caller-allocated buffer (zero copy).
    /// Empty only after a failure.
    pub fn read_buf(&mut self) -> &mut [u8] {
        match &mut self.state {
            State::Header { have } => &mut self.header_bytes[*have..],
            State::Body { header, have } => {
                let len = header.body_len as usize;
                &mut self.body.as_mut_slice()[*have..len]
            }
            State::Data { header, buf, have } => {
                let len = header.data_len as usize;
                A::ready(buf, len);
                &mut buf.as_mut()[*have..len]
            }
            State::Mac { have, .. } => &mut self.mac[*have..],
            State::Failed => &mut [],
        }
    }

    /// The length of [`Self::read_buf`], without preparing it.
    fn window_len(&self) -> usize {
        match &self.state {
            State::Header { have } => HEADER_BYTES - have,
            State::Body { header, have } => header.body_len as usize - have,
            State::Data { header, have, .. } => header.data_len as usize - have,
            State::Mac { have, .. } => MAC_BYTES - have,
            State::Failed => 0,
        }
    }

    /// Records that `n` bytes were written into [`Self::read_buf`]; returns a
    /// frame when one completed. `n` larger than the window is our caller's
    /// bug, so it is an assertion.
    pub fn advance(&mut self, n: usize) -> Result<Option<Frame<A::Buf>>, FrameError> {
        assert!(n <= self.window_len(), "advance past the read window");
        let result = self.step(n);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Feeds bytes in any split; complete frames are appended to `out`.
    /// Returns how many bytes were consumed (all of them unless an error).
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<Frame<A::Buf>>) -> Result<usize, FrameError> {
        let total = input.len();
        while !input.is_empty() {
            let window = self.window_len();
            if window == 0 {
                return Err(FrameError::BadBody("decoder already failed".into()));
            }
            let n = window.min(input.len());
            match &mut self.state {
                // Appended: a data buffer need not be prepared first.
                State::Data { buf, have, .. } => A::put(buf, *have, &input[..n]),
                _ => self.read_buf()[..n].copy_from_slice(&input[..n]),
            }
            input = &input[n..];
            if let Some(frame) = self.advance(n)? {
                out.push(frame);
            }
        }
        Ok(total)
    }

    /// True between frames (a clean place to close the connection).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Header { have: 0 })
    }

    fn step(&mut self, n: usize) -> Result<Option<Frame<A::Buf>>, FrameError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (next, frame) = match state {
            State::Header { have } => {
                let have = have + n;
                if have < HEADER_BYTES {
                    (State::Header { have }, None)
                } else {
                    let header = Header::parse(&self.header_bytes, self.known_type)?;
                    if self.key.is_some() && header.flags & FLAG_MAC == 0 {
                        return Err(FrameError::MissingMac);
                    }
                    self.crc = crc32fast::Hasher::new();
                    self.crc.update(&self.header_bytes[..28]);
                    // Bounded above by Header::parse; resized, not reserved
                    // by the attacker beyond that bound.
                    self.body = rkyv::util::AlignedVec::new();
                    self.body.resize(header.body_len as usize, 0);
                    self.after_body_bytes(header)?
                }
            }
            State::Body { header, have } => {
                let have = have + n;
                if have < header.body_len as usize {
                    (State::Body { header, have }, None)
                } else {
                    self.crc.update(&self.body);
                    self.after_body(header)?
                }
            }
            State::Data { header, buf, have } => {
                let have = have + n;
                if have < header.data_len as usize {
                    (State::Data { header, buf, have }, None)
                } else {
                    self.crc.update(&buf.as_ref()[..header.data_len as usize]);
                    self.after_data(header, Some(buf))?
                }
            }
            State::Mac { header, data, have } => {
                let have = have + n;
                if have < MAC_BYTES {
                    (State::Mac { header, data, have }, None)
                } else {
                    let frame = self.finish(header, data)?;
                    (State::Header { have: 0 }, Some(frame))
                }
            }
            State::Failed => return Err(FrameError::BadBody("decoder already failed".into())),
        };
        self.state = next;
        Ok(frame)
    }

    /// Header done: expect the body, or skip straight on if it is empty.
    #[allow(clippy::type_complexity)]
    fn after_body_bytes(&mut self, header: Header) -> Result<(State<A::Buf>, Option<Frame<A::Buf>>), FrameError> {
        if header.body_len == 0 {
            self.after_body(header)
        } else {
            Ok((State::Body { header, have: 0 }, None))
        }
    }

    #[allow(clippy::type_complexity)]
    fn after_body(&mut self, header: Header) -> Result<(State<A::Buf>, Option<Frame<A::Buf>>), FrameError> {
        if header.data_len == 0 {
            return self.after_data(header, None);
        }
        let len = header.data_len as usize;
        let buf = self.alloc.alloc(len);
        let got = A::room(&buf);
        if got < len {
            return Err(FrameError::ShortDataBuffer { need: len, got });
        }
        Ok((State::Data { header, buf, have: 0 }, None))
    }

    #[allow(clippy::type_complexity)]
    fn after_data(
        &mut self,
        header: Header,
        data: Option<A::Buf>,
    ) -> Result<(State<A::Buf>, Option<Frame<A::Buf>>), FrameError> {
        if header.flags & FLAG_MAC != 0 {
            return Ok((State::Mac { header, data, have: 0 }, None));
        }
        let frame = self.finish(header, data)?;
        Ok((State::Header { have: 0 }, Some(frame)))
    }

    fn finish(&mut self, header: Header, data: Option<A::Buf>) -> Result<Frame<A::Buf>, FrameError> {
        let actual = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        if actual != header.crc {
            return Err(FrameError::BadCrc { expected: header.crc, actual });
        }
        let data_slice: &[u8] = match &data {
            Some(b) => &b.as_ref()[..header.data_len as usize],
            None => &[],
        };
        match (&self.key, header.flags & FLAG_MAC != 0) {
            (Some(key), true) => {
                if !key.verify_frame_mac(&[&self.header_bytes, &self.body, data_slice], &self.mac) {
                    return Err(FrameError::BadMac);
                }
            }
            // A MAC we cannot check yet (before the key is installed) is
            // still covered by the crc; the hello/auth exchange is unsigned.
            (None, _) => {}
            (Some(_), false) => return Err(FrameError::MissingMac),
        }
        let body = std::mem::take(&mut self.body);
        Ok(Frame { header, body, data })
    }
}

/// Counts requests a peer has outstanding on one connection so a shell can
/// stop reading (back-pressure) at `limits::frames_in_flight_max`.
#[derive(Debug, Default)]
pub struct InFlight {
    count: usize,
}

impl InFlight {
    /// Takes a slot; `false` means the peer exceeded its window.
    pub fn try_acquire(&mut self) -> bool {
        if self.count >= limits::frames_in_flight_max {
            return false;
        }
        self.count += 1;
        true
    }

    pub fn release(&mut self) {
        assert!(self.count > 0, "release without acquire");
        self.count -= 1;
    }

    pub fn count(&self) -> usize {
        self.count
    }
}
