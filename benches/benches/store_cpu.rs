//! Criterion bench: the object store's own CPU per operation, on the
//! simulated in-memory device (each device write is a memcpy, a sync
//! moves it to the medium), so the figure holds no io_uring, no kernel and
//! no waiting — what `sepia-bench store` measures as CPU per I/O, less the
//! syscalls, and steady enough to compare two builds on a noisy machine.
//!
//! The store is filled like the store benchmark's (4 KiB objects in one
//! collection) plus a PG meta object whose omap holds a clean PG's log
//! (250 `log.` keys and an `info` key). Each iteration commits one
//! transaction alone (a group commit of one):
//! - `overwrite-4k`: a whole-block overwrite of a random object;
//! - `pg-write-4k`: the transaction a PG write is on every copy: the
//!   overwrite, the object's version attr, the new log key and `info`, and
//!   the trim of the oldest log key;
//! - `read-4k`: a read of a random object (crc checked).
//!
//! Run: `cargo bench -p sepia-bench --bench store_cpu`.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_lite::future::block_on;
use sepia_osd::objstore::{CollId, Expect, MkfsOptions, Op, SimDevice, Store, Transaction};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const COLL: CollId = CollId { pool: 1, seed: 0 };
const OBJECTS: u64 = 16384;
const PGMETA: &str = "\u{0}pgmeta";
const LOG_KEYS: u64 = 250;

fn name(i: u64) -> String {
    format!("bench-object-{i:08}")
}

fn log_key(v: u64) -> String {
    format!("log.{:010}.{v:020}", 7)
}

/// xorshift: the bench's object picks, the same sequence every run.
struct Picks(u64);

impl Picks {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % OBJECTS
    }
}

fn filled_store() -> Store<SimDevice> {
    let dev = SimDevice::new(512 << 20);
    let opts = MkfsOptions { fsid: [1; 16], osd: 0, shards: 1, osd_uuid: [2; 16], journal_bytes: Some(16 << 20), checkpoint_bytes: None };
    block_on(Store::mkfs(&dev, &opts)).expect("mkfs");
    let store = block_on(Store::mount(dev, 0, Expect { fsid: Some([1; 16]), osd: 0, shards: 1 })).expect("mount");
    block_on(async {
        store.submit(Transaction { ops: vec![Op::CreateCollection(COLL), Op::Touch { coll: COLL, obj: PGMETA.into() }] }).await.expect("collection");
        for batch in 0..OBJECTS / 64 {
            let ops = (batch * 64..(batch + 1) * 64).map(|i| Op::Write { coll: COLL, obj: name(i), offset: 0, data: vec![i as u8; 4096] }).collect();
            store.submit(Transaction { ops }).await.expect("fill");
        }
        let entries: BTreeMap<String, Vec<u8>> = (0..LOG_KEYS).map(|v| (log_key(v), vec![0xab; 150])).chain([("info".to_string(), vec![0xcd; 60])]).collect();
        store.submit(Transaction { ops: vec![Op::OmapSetKeys { coll: COLL, obj: PGMETA.into(), entries }] }).await.expect("log");
    });
    store
}

fn store_cpu(c: &mut Criterion) {
    let store = filled_store();
    let mut g = c.benchmark_group("store-cpu");
    g.throughput(Throughput::Elements(1));
    let mut picks = Picks(0x9e37_79b9_7f4a_7c15);
    let block = vec![0x5a; 4096];

    g.bench_function("overwrite-4k", |b| {
        b.iter(|| {
            let ops = vec![Op::Write { coll: COLL, obj: name(picks.next()), offset: 0, data: block.clone() }];
            block_on(store.submit(Transaction { ops })).expect("overwrite");
        })
    });

    let mut version = LOG_KEYS;
    g.bench_function("pg-write-4k", |b| {
        b.iter(|| {
            let obj = name(picks.next());
            let entries = BTreeMap::from([(log_key(version), vec![0xab; 150]), ("info".to_string(), vec![0xcd; 60])]);
            let ops = vec![
                Op::Write { coll: COLL, obj: obj.clone(), offset: 0, data: block.clone() },
                Op::SetAttr { coll: COLL, obj, name: "\u{0}ver".into(), value: version.to_le_bytes().to_vec() },
                Op::OmapSetKeys { coll: COLL, obj: PGMETA.into(), entries },
                Op::OmapRmRange { coll: COLL, obj: PGMETA.into(), start: "log.".into(), end: format!("{}\u{0}", log_key(version - LOG_KEYS)) },
            ];
            version += 1;
            block_on(store.submit(Transaction { ops })).expect("pg write");
        })
    });

    g.bench_function("read-4k", |b| {
        b.iter(|| {
            let got = block_on(store.read(&COLL, &name(picks.next()), 0, 4096)).expect("read");
            assert_eq!(got.len(), 4096);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(2)).measurement_time(std::time::Duration::from_secs(6));
    targets = store_cpu
}
criterion_main!(benches);
