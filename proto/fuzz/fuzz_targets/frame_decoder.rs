//! Arbitrary bytes, in arbitrary splits, into the frame decoder; every
//! frame that passes is decoded as a message and, for ops, checked. Nothing
//! may panic, and no allocation may exceed the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sepia_proto::frame::FrameDecoder;
use sepia_proto::msg::{self, known_type, Body};

fuzz_target!(|input: &[u8]| {
    // The first byte picks the split size so the fuzzer explores splits too.
    let Some((&split, bytes)) = input.split_first() else { return };
    let split = usize::from(split).max(1);
    let mut dec = FrameDecoder::new(known_type);
    let mut frames = Vec::new();
    for chunk in bytes.chunks(split) {
        if dec.feed(chunk, &mut frames).is_err() {
            break;
        }
    }
    for f in &frames {
        if let Ok(body) = msg::decode(f) {
            match body {
                Body::OsdOp(op) => {
                    let _ = op.check(f.data().len());
                }
                Body::RepOp(op) => {
                    let _ = op.check(f.data().len());
                }
                Body::OsdMap(d) => {
                    if let Some(full) = &d.full {
                        let _ = sepia_proto::osdmap::OsdMap::from_wire(full);
                    }
                }
                _ => {}
            }
        }
    }
});
