//! Criterion bench: the OSD's per-op allocations under the system allocator
//! and under mimalloc (the global allocator of `sepia-osd`, `sepia-mon` and
//! `sepia`), in one process so the ratio comes from one run.
//!
//! The work is the data path of one 4 KiB replicated write as the OSD does
//! it: encode the client's frame, decode it from the socket bytes (payload
//! copied once), deserialize the op, build the store transaction and the
//! PG log entry, encode the replica's frame and the reply, drop it all.
//!
//! How both allocators live in one process: a global allocator that sends
//! new allocations to the one a flag selects and frees each block with the
//! allocator that owns it (`mi_is_in_heap_region`), so switching between
//! groups never frees a block with the wrong allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sepia_osd::objstore::{CollId, Op, Transaction};
use sepia_proto::frame::FrameDecoder;
use sepia_proto::msg::{
    self, known_type, Body, EVersion, ObjectId, OsdOp, OsdOpReply, RepOp, ReqId, SubOp,
};
use sepia_proto::osdmap::PgId;

static USE_MIMALLOC: AtomicBool = AtomicBool::new(false);

struct Switch;

unsafe impl GlobalAlloc for Switch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if USE_MIMALLOC.load(Ordering::Relaxed) {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if unsafe { libmimalloc_sys::mi_is_in_heap_region(ptr as *const _) } {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if unsafe { libmimalloc_sys::mi_is_in_heap_region(ptr as *const _) } {
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        } else {
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch;

fn one_write(payload: &[u8], decoder: &mut FrameDecoder) -> usize {
    let object = ObjectId::new("rbd_data.1f2e3d4c5b6a.0000000000000007");
    let op = Body::OsdOp(OsdOp {
        reqid: ReqId {
            client: 4242,
            tid: 17,
        },
        pg: PgId {
            pool: 1,
            seed: 0x1e2,
        },
        epoch: 42,
        object: object.clone(),
        subops: vec![SubOp::Write {
            offset: 8192,
            data_offset: 0,
            len: payload.len() as u32,
        }],
    });
    let wire = msg::encode(&op, 1, payload, None).expect("encode").to_vec();
    let mut frames = Vec::with_capacity(1);
    decoder.feed(&wire, &mut frames).expect("feed");
    let f = frames.pop().expect("a frame");
    let Ok(Body::OsdOp(op)) = msg::decode(&f) else {
        panic!("not an op")
    };
    let data = f.data().to_vec();
    let coll = CollId {
        pool: op.pg.pool,
        seed: op.pg.seed,
    };
    let key = op.object.name.clone();
    let txn = Transaction {
        ops: vec![
            Op::Write {
                coll,
                obj: key.clone(),
                offset: 8192,
                data: data.clone(),
            },
            Op::OmapSetKeys {
                coll,
                obj: "\u{0}pgmeta".into(),
                entries: BTreeMap::from([
                    (format!("log.{:010}.{:020}", 42, 17), vec![0u8; 96]),
                    ("info".into(), vec![0u8; 40]),
                ]),
            },
        ],
    };
    let rep = Body::RepOp(RepOp {
        reqid: op.reqid,
        pg: op.pg,
        epoch: 42,
        version: EVersion {
            epoch: 42,
            version: 17,
        },
        object,
        subops: op.subops.clone(),
        trim_to: EVersion::default(),
        prior_version: Some(EVersion::default()),
    });
    let rep_wire = msg::encode(&rep, 2, &data, None).expect("encode").to_vec();
    let reply = Body::OsdOpReply(OsdOpReply {
        reqid: op.reqid,
        result: 0,
        epoch: 42,
        version: EVersion {
            epoch: 42,
            version: 17,
        },
        outs: Vec::new(),
    });
    let reply_wire = msg::encode(&reply, 1, &[], None).expect("encode").to_vec();
    txn.ops.len() + rep_wire.len() + reply_wire.len()
}

fn data_path(c: &mut Criterion) {
    let payload = vec![0x5au8; 4096];
    let mut g = c.benchmark_group("alloc/osd-write-4k");
    g.throughput(Throughput::Elements(1));
    for (name, mi) in [("system", false), ("mimalloc", true)] {
        USE_MIMALLOC.store(mi, Ordering::Relaxed);
        let mut decoder = FrameDecoder::new(known_type);
        g.bench_function(name, |b| b.iter(|| one_write(&payload, &mut decoder)));
    }
    USE_MIMALLOC.store(false, Ordering::Relaxed);
    g.finish();
}

criterion_group!(benches, data_path);
criterion_main!(benches);
