//! Frames: round trips under arbitrary splits, zero copy of the data
//! segment, and every kind of bad input answered with a typed error.

use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sepia_proto::frame::{
    encode_frame, DataAlloc, FrameDecoder, FrameError, FrameMac, Header, InFlight, HEADER_BYTES, MAC_BYTES,
};
use sepia_proto::limits;
use sepia_proto::msg::{self, known_type, Body, CmpOp, ObjectId, OsdOp, ReqId, SubOp};
use sepia_proto::osdmap::PgId;

/// A MAC for tests: HMAC-SHA256/128 over the parts.
struct TestMac([u8; 32]);

impl FrameMac for TestMac {
    fn frame_mac(&self, parts: &[&[u8]]) -> [u8; MAC_BYTES] {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(&self.0).unwrap();
        for p in parts {
            m.update(p);
        }
        let full = m.finalize().into_bytes();
        full[..MAC_BYTES].try_into().unwrap()
    }
    fn verify_frame_mac(&self, parts: &[&[u8]], tag: &[u8; MAC_BYTES]) -> bool {
        self.frame_mac(parts) == *tag
    }
}

fn write_op(tid: u64, len: u32) -> Body {
    Body::OsdOp(OsdOp {
        reqid: ReqId { client: 7, tid },
        pg: PgId { pool: 1, seed: 0x1e2 },
        epoch: 42,
        object: ObjectId::new(format!("obj-{tid}")),
        subops: vec![SubOp::Write { offset: 4096 * tid, data_offset: 0, len }],
    })
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn decode_all(stream: &[u8], splits: &[usize], key: Option<[u8; 32]>) -> Result<Vec<(Body, Vec<u8>, u64)>, FrameError> {
    let mut dec = FrameDecoder::new(known_type);
    if let Some(k) = key {
        dec.set_session_key(Box::new(TestMac(k)));
    }
    let mut frames = Vec::new();
    let mut rest = stream;
    for &s in splits {
        let n = s.min(rest.len());
        dec.feed(&rest[..n], &mut frames)?;
        rest = &rest[n..];
    }
    dec.feed(rest, &mut frames)?;
    assert!(dec.is_idle());
    frames.iter().map(|f| Ok((msg::decode(f)?, f.data().to_vec(), f.header.txid))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn frames_round_trip_under_any_split(
        lens in proptest::collection::vec(0usize..9000, 1..6),
        splits in proptest::collection::vec(0usize..5000, 0..20),
        with_mac: bool,
    ) {
        let key = with_mac.then_some([9u8; 32]);
        let mac = key.map(TestMac);
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let body = write_op(i as u64, len as u32);
            let data = payload(len, i as u8);
            let f = msg::encode(&body, 1000 + i as u64, &data, mac.as_ref().map(|m| m as &dyn FrameMac)).unwrap();
            stream.extend_from_slice(&f.to_vec());
            expected.push((body, data, 1000 + i as u64));
        }
        let got = decode_all(&stream, &splits, key).unwrap();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
        let mut dec = FrameDecoder::new(known_type);
        let mut frames = Vec::new();
        let split = split.min(bytes.len());
        if dec.feed(&bytes[..split], &mut frames).is_ok() {
            let _ = dec.feed(&bytes[split..], &mut frames);
        }
        for f in &frames {
            let _ = msg::decode(f);
        }
    }
}

/// Hands out 4 KiB-aligned buffers and remembers where they live.
#[derive(Default)]
struct RecordingAlloc {
    handed_out: Vec<usize>,
}

struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }
}
impl AsMut<[u8]> for AlignedBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + self.len]
    }
}

impl DataAlloc for RecordingAlloc {
    type Buf = AlignedBuf;
    fn alloc(&mut self, len: usize) -> AlignedBuf {
        let rounded = len.div_ceil(4096) * 4096;
        let mem = vec![0u8; rounded + 4096];
        let start = (4096 - (mem.as_ptr() as usize % 4096)) % 4096;
        let buf = AlignedBuf { mem, start, len: rounded };
        self.handed_out.push(buf.as_ref().as_ptr() as usize);
        buf
    }
}

#[test]
fn data_segment_lands_in_the_callers_buffer_without_a_copy() {
    let data = payload(4096, 3);
    let encoded = msg::encode(&write_op(1, 4096), 5, &data, None).unwrap();
    let wire = encoded.to_vec();
    let mut dec = FrameDecoder::with_alloc(RecordingAlloc::default(), known_type);
    // The shell's loop: read the socket straight into read_buf(). Here the
    // "socket" is `wire`, delivered in reads of at most 1000 bytes.
    let mut pos = 0;
    let mut frame = None;
    let mut data_windows = Vec::new();
    while frame.is_none() {
        let window = dec.read_buf();
        let n = window.len().min(1000).min(wire.len() - pos);
        let window_addr = window.as_ptr() as usize;
        window[..n].copy_from_slice(&wire[pos..pos + n]); // the kernel's recv
        if pos >= HEADER_BYTES + encoded.body.len() {
            data_windows.push(window_addr);
        }
        pos += n;
        frame = dec.advance(n).unwrap();
    }
    let frame = frame.unwrap();
    let buf_addr = frame.data.as_ref().unwrap().as_ref().as_ptr() as usize;
    assert_eq!(buf_addr % 4096, 0, "the payload sits in the aligned buffer");
    assert_eq!(buf_addr, frame.data().as_ptr() as usize, "data() is that buffer, not a copy");
    assert_eq!(frame.data(), &data[..]);
    // Every receive of the data segment went straight into that buffer.
    assert!(!data_windows.is_empty());
    for w in data_windows {
        assert!(w >= buf_addr && w < buf_addr + 4096, "recv window {w:#x} outside the DMA buffer {buf_addr:#x}");
    }
}

#[test]
fn take_data_moves_the_data_segment_out() {
    let data = payload(5000, 9);
    let wire = msg::encode(&write_op(2, 5000), 6, &data, None).unwrap().to_vec();
    let mut frames = Vec::new();
    FrameDecoder::new(known_type).feed(&wire, &mut frames).unwrap();
    let mut frame = frames.pop().unwrap();
    let buf_addr = frame.data().as_ptr() as usize;
    let taken = frame.take_data();
    assert_eq!(taken, data);
    assert_eq!(taken.as_ptr() as usize, buf_addr, "the frame's own buffer, not a copy");
    assert!(frame.data().is_empty() && frame.take_data().is_empty(), "the frame keeps nothing");
    // The body is still there to decode.
    assert!(matches!(msg::decode(&frame).unwrap(), Body::OsdOp(op) if op.reqid.tid == 2));
}

/// The default decoder appends a data segment as it is fed; a caller may
/// still switch to reading into `read_buf()` half-way (and back).
#[test]
fn a_data_segment_can_be_fed_and_read_into_in_turns() {
    let data = payload(9000, 4);
    let wire = msg::encode(&write_op(3, 9000), 7, &data, None).unwrap().to_vec();
    let data_at = wire.len() - data.len();
    let mut dec = FrameDecoder::new(known_type);
    let mut frames = Vec::new();
    // Header, body and 1000 bytes of data fed; 3000 read into the window;
    // the rest fed again.
    dec.feed(&wire[..data_at + 1000], &mut frames).unwrap();
    let window = dec.read_buf();
    assert_eq!(window.len(), data.len() - 1000);
    window[..3000].copy_from_slice(&wire[data_at + 1000..data_at + 4000]);
    assert!(dec.advance(3000).unwrap().is_none());
    dec.feed(&wire[data_at + 4000..], &mut frames).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].data(), &data[..]);
    assert!(matches!(msg::decode(&frames[0]).unwrap(), Body::OsdOp(op) if op.reqid.tid == 3));
}

/// A frame encoded with its data's crc given (a store's block crc) is the
/// very frame encoded without it.
#[test]
fn a_given_data_crc_makes_the_same_frame() {
    for len in [0usize, 1, 4096, 9000] {
        let data = payload(len, 5);
        let plain = msg::encode(&write_op(4, len as u32), 8, &data, None).unwrap().to_vec();
        let given = msg::encode_with_data_crc(&write_op(4, len as u32), 8, &data, Some(crc32fast::hash(&data)), None).unwrap().to_vec();
        assert_eq!(plain, given, "{len} bytes");
    }
}

fn frame_bytes(body: &Body, data: &[u8]) -> Vec<u8> {
    msg::encode(body, 1, data, None).unwrap().to_vec()
}

fn first_error(bytes: &[u8]) -> FrameError {
    let mut dec = FrameDecoder::new(known_type);
    let mut frames = Vec::new();
    match dec.feed(bytes, &mut frames) {
        Err(e) => e,
        Ok(_) => match frames.first().map(msg::decode) {
            Some(Err(e)) => e,
            other => panic!("expected an error, got {:?}", other.map(|r| r.is_ok())),
        },
    }
}

fn with_header(mut bytes: Vec<u8>, edit: impl Fn(&mut [u8])) -> Vec<u8> {
    edit(&mut bytes[..HEADER_BYTES]);
    // Recompute the crc so the error is the one we aimed at.
    let body_len = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
    let data_len = u32::from_le_bytes(bytes[24..28].try_into().unwrap()) as usize;
    let end = (HEADER_BYTES + body_len + data_len).min(bytes.len());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..28]);
    crc.update(&bytes[HEADER_BYTES..end]);
    let c = crc.finalize();
    bytes[28..32].copy_from_slice(&c.to_le_bytes());
    bytes
}

#[test]
fn bad_frames_are_typed_errors() {
    let good = frame_bytes(&write_op(1, 100), &payload(100, 1));
    assert!(matches!(first_error(&with_header(good.clone(), |h| h[0] = b'X')), FrameError::BadMagic(_)));
    assert_eq!(first_error(&with_header(good.clone(), |h| h[4] = 99)), FrameError::BadVersion(99));
    assert_eq!(first_error(&with_header(good.clone(), |h| h[6..8].copy_from_slice(&999u16.to_le_bytes()))), FrameError::UnknownType(999));
    assert_eq!(first_error(&with_header(good.clone(), |h| h[8] = 0x80)), FrameError::UnknownFlags(0x80));
    // A body of 4 GiB is refused from the header alone.
    assert!(matches!(
        first_error(&with_header(good.clone(), |h| h[20..24].copy_from_slice(&u32::MAX.to_le_bytes()))),
        FrameError::TooLong { what: "frame body", .. }
    ));
    let too_much_data = (limits::frame_data_bytes_max + 1) as u32;
    assert!(matches!(
        first_error(&with_header(good.clone(), |h| h[24..28].copy_from_slice(&too_much_data.to_le_bytes()))),
        FrameError::TooLong { what: "data segment", .. }
    ));
    // The header says OsdOp, the body is an OsdOpReply-shaped mismatch.
    let ping = frame_bytes(
        &Body::Ping(msg::Ping { from: 1, epoch: 2, stamp_ms: 3, reply: false }),
        &[],
    );
    assert!(matches!(
        first_error(&with_header(ping, |h| h[6..8].copy_from_slice(&50u16.to_le_bytes()))),
        FrameError::TypeMismatch { header: 50, body: 70 } | FrameError::BadBody(_)
    ));
}

#[test]
fn every_single_byte_flip_is_caught() {
    let good = frame_bytes(&write_op(3, 64), &payload(64, 9));
    for i in 0..good.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= bit;
            let mut dec = FrameDecoder::new(known_type);
            let mut frames = Vec::new();
            let result = dec.feed(&bad, &mut frames);
            // A flipped length may leave the decoder waiting for more bytes;
            // what must never happen is a frame that decodes as good.
            match result {
                Err(_) => {}
                Ok(_) => assert!(frames.is_empty(), "flip of bit {bit:#x} at byte {i} went unnoticed"),
            }
        }
    }
}

#[test]
fn rkyv_garbage_with_a_valid_crc_fails_validation() {
    let good = frame_bytes(&write_op(1, 0), &[]);
    let body_len = u32::from_le_bytes(good[20..24].try_into().unwrap()) as usize;
    let mut bad = good.clone();
    for b in &mut bad[HEADER_BYTES..HEADER_BYTES + body_len] {
        *b = 0xff;
    }
    let bad = with_header(bad, |_| {});
    assert!(matches!(first_error(&bad), FrameError::BadBody(_)));
}

#[test]
fn mac_is_required_checked_and_binding() {
    let key = TestMac([1; 32]);
    let data = payload(512, 4);
    let signed = msg::encode(&write_op(1, 512), 1, &data, Some(&key)).unwrap().to_vec();
    assert!(decode_all(&signed, &[], Some([1; 32])).is_ok());
    assert_eq!(decode_all(&signed, &[], Some([2; 32])).unwrap_err(), FrameError::BadMac);
    let unsigned = msg::encode(&write_op(1, 512), 1, &data, None).unwrap().to_vec();
    assert_eq!(decode_all(&unsigned, &[], Some([1; 32])).unwrap_err(), FrameError::MissingMac);
    // Changing the payload and fixing the crc still breaks the MAC.
    let mut forged = signed.clone();
    let at = forged.len() - MAC_BYTES - 1;
    forged[at] ^= 1;
    let forged = with_header(forged, |_| {});
    assert_eq!(decode_all(&forged, &[], Some([1; 32])).unwrap_err(), FrameError::BadMac);
}

#[test]
fn a_failed_decoder_stays_failed() {
    let mut dec = FrameDecoder::new(known_type);
    let mut frames = Vec::new();
    assert!(dec.feed(b"NOPE0000000000000000000000000000", &mut frames).is_err());
    assert!(dec.read_buf().is_empty());
    let good = frame_bytes(&write_op(1, 0), &[]);
    assert!(dec.feed(&good, &mut frames).is_err());
}

#[test]
fn encoder_refuses_oversized_segments() {
    let big = vec![0u8; limits::frame_data_bytes_max + 1];
    assert!(matches!(
        encode_frame(50, 1, msg::archive(&write_op(1, 0)), &big, None),
        Err(FrameError::TooLong { .. })
    ));
}

#[test]
fn header_round_trip() {
    let h = Header { version: 1, msg_type: 50, flags: 1, txid: u64::MAX - 3, body_len: 10, data_len: 20, crc: 0xdead_beef };
    assert_eq!(Header::parse(&h.to_bytes(), known_type).unwrap(), h);
}

#[test]
fn in_flight_window_is_bounded() {
    let mut w = InFlight::default();
    for _ in 0..limits::frames_in_flight_max {
        assert!(w.try_acquire());
    }
    assert!(!w.try_acquire());
    w.release();
    assert!(w.try_acquire());
    assert_eq!(w.count(), limits::frames_in_flight_max);
}

#[test]
fn osd_op_checks_bound_data_references() {
    let Body::OsdOp(mut op) = write_op(1, 4096) else { unreachable!() };
    assert!(op.check(4096).is_ok());
    assert!(op.check(4095).is_err(), "write references bytes past the segment");
    op.subops = vec![SubOp::Stat; limits::subops_per_op_max + 1];
    assert!(op.check(0).is_err());
    op.subops = vec![];
    assert!(op.check(0).is_err());
    op.subops = vec![SubOp::Read { offset: u64::MAX, len: 2 }];
    assert!(op.check(0).is_err());
}

#[test]
fn osd_op_checks_refuse_the_osds_own_xattr_names() {
    let Body::OsdOp(mut op) = write_op(1, 4096) else { unreachable!() };
    let reserved = "\0ver".to_string();
    for subop in [
        SubOp::GetXattr { name: reserved.clone() },
        SubOp::RmXattr { name: reserved.clone() },
        SubOp::SetXattr { name: reserved.clone(), value: vec![1] },
        SubOp::CmpXattr { name: reserved.clone(), op: CmpOp::Eq, value: vec![1] },
    ] {
        op.subops = vec![subop.clone()];
        assert!(op.check(0).is_err(), "{subop:?} names an OSD attr");
    }
    op.subops = vec![SubOp::SetXattr { name: "user.ver\0".into(), value: vec![1] }];
    assert!(op.check(0).is_ok(), "NUL only reserves the first byte");
}
