//! Criterion benches of the wire: encode + decode of a 4 KiB write-op frame
//! (encoded without and with the `ms_mode = sign` MAC; decoded through `feed`, which copies the payload once, and through
//! `read_buf`/`advance`, which receives it in place — the zero-copy path),
//! and of an OSDMap incremental touching all 1,000 OSDs of a map (encode,
//! decode, apply), plus one with a single OSD marked down.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use crush_simd::compare::synthetic_map;
use sepia_proto::frame::{DataAlloc, FrameDecoder};
use sepia_proto::msg::{self, known_type, Body, ObjectId, OsdOp, ReqId, SubOp};
use sepia_proto::osdmap::{OsdInfo, OsdMap, OsdMapIncremental, PgId, OSD_IN};

fn write_op() -> Body {
    Body::OsdOp(OsdOp {
        reqid: ReqId { client: 4242, tid: 17 },
        pg: PgId { pool: 1, seed: 0x1e2 },
        epoch: 42,
        object: ObjectId::new("rbd_data.1f2e3d4c5b6a.0000000000000007"),
        subops: vec![SubOp::Write { offset: 8192, data_offset: 0, len: 4096 }],
    })
}

/// Hands back one reusable buffer, like an OSD's pool of DMA buffers.
struct Reuse(Option<Vec<u8>>);

impl DataAlloc for &mut Reuse {
    type Buf = Vec<u8>;
    fn alloc(&mut self, len: usize) -> Vec<u8> {
        let mut b = self.0.take().unwrap_or_default();
        b.resize(len, 0);
        b
    }
}

fn frames(c: &mut Criterion) {
    let payload = vec![0xa5u8; 4096];
    let body = write_op();
    let wire = msg::encode(&body, 1, &payload, None).unwrap().to_vec();
    let mut g = c.benchmark_group("proto/write-4k-frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| b.iter(|| msg::encode(&body, 1, &payload, None).unwrap().header));
    // `ms_mode = sign`: the same frame with its keyed-BLAKE3 MAC; the
    // difference from `encode` is what signing costs each side per frame.
    let key = sepia_proto::auth::mac::SessionKey([7; 32]);
    g.bench_function("encode-signed", |b| b.iter(|| msg::encode(&body, 1, &payload, Some(&key)).unwrap().mac));
    g.bench_function("decode-feed-copy", |b| {
        let mut dec = FrameDecoder::new(known_type);
        let mut out = Vec::with_capacity(1);
        b.iter(|| {
            out.clear();
            dec.feed(&wire, &mut out).unwrap();
            msg::access(&out[0]).unwrap().msg_type()
        })
    });
    g.bench_function("decode-in-place", |b| {
        let mut pool = Reuse(Some(vec![0; 4096]));
        b.iter(|| {
            let mut dec = FrameDecoder::with_alloc(&mut pool, known_type);
            let mut pos = 0;
            // The socket read straight into the decoder's window; here the
            // "kernel" copy is the only copy of the payload.
            loop {
                let w = dec.read_buf();
                let n = w.len();
                w.copy_from_slice(&wire[pos..pos + n]);
                pos += n;
                if let Some(f) = dec.advance(n).unwrap() {
                    let t = msg::access(&f).unwrap().msg_type();
                    drop(dec);
                    pool.0 = f.data;
                    break t;
                }
            }
        })
    });
    g.finish();
}

fn big_map() -> OsdMap {
    let crush = synthetic_map(10, 10, 10);
    let mut map = OsdMap::new([3; 16], crush, 1);
    for id in 0..1000 {
        map.osds.push(OsdInfo {
            id,
            uuid: [id as u8; 16],
            exists: true,
            up: false,
            weight: OSD_IN,
            addrs: (0..4).map(|s| format!("10.0.{}.{}:{}", id / 250, id % 250, 6800 + s)).collect(),
            up_from: 0,
            down_at: 0,
            lost_at: 0,
        });
    }
    map
}

fn incrementals(c: &mut Criterion) {
    let map = big_map();
    let mut all_up = map.clone();
    all_up.epoch += 1;
    for o in &mut all_up.osds {
        o.up = true;
        o.up_from = all_up.epoch;
    }
    let mut one_down = all_up.clone();
    one_down.epoch += 1;
    one_down.osds[17].up = false;
    for (label, from, to) in [("1000-osds-boot", &map, &all_up), ("one-osd-down", &all_up, &one_down)] {
        let inc = from.diff(to);
        let bytes = inc.encode();
        let mut g = c.benchmark_group(format!("proto/osdmap-incremental/{label}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("diff+encode", |b| b.iter(|| from.diff(to).encode().len()));
        g.bench_function("decode", |b| b.iter(|| OsdMapIncremental::decode(&bytes).unwrap().new_osds.len()));
        // The map clone is setup, outside the timing.
        g.bench_function("decode+apply", |b| {
            b.iter_batched(
                || from.clone(),
                |mut m| {
                    m.apply(&OsdMapIncremental::decode(&bytes).unwrap()).unwrap();
                    m
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, frames, incrementals);
criterion_main!(benches);
