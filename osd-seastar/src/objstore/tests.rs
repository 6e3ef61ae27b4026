//! Store tests on the simulated device: every operation, errors, space,
//! integrity, and the seeded crash-consistency run.

use std::collections::BTreeMap;

use std::future::Future;

use futures_lite::future::block_on;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::device::{CrashPlan, SimDevice, BLOCK};
use super::store::{Counters, Expect, MkfsOptions, Store};
use super::txn::{CollId, Op, StoreError, Transaction};

const C1: CollId = CollId { pool: 1, seed: 0 };
const C2: CollId = CollId { pool: 1, seed: 1 };

fn opts(journal: u64) -> MkfsOptions {
    MkfsOptions { fsid: [9; 16], osd: 3, shards: 1, osd_uuid: [8; 16], journal_bytes: Some(journal), checkpoint_bytes: Some(2 << 20) }
}

fn expect() -> Expect {
    Expect { fsid: Some([9; 16]), osd: 3, shards: 1 }
}

fn fresh(len: u64, journal: u64) -> (SimDevice, Store<SimDevice>) {
    let dev = SimDevice::new(len);
    block_on(Store::mkfs(&dev, &opts(journal))).unwrap();
    let store = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    (dev, store)
}

fn txn(ops: Vec<Op>) -> Transaction {
    Transaction { ops }
}

fn w(coll: CollId, obj: &str, offset: u64, data: &[u8]) -> Op {
    Op::Write { coll, obj: obj.into(), offset, data: data.to_vec() }
}

#[test]
fn every_operation_round_trips() {
    let (dev, s) = fresh(16 << 20, 1 << 20);
    block_on(async {
        s.submit(txn(vec![Op::CreateCollection(C1)])).await.unwrap();
        assert_eq!(s.submit(txn(vec![Op::CreateCollection(C1)])).await, Err(StoreError::CollectionExists(C1)));
        s.submit(txn(vec![w(C1, "a", 0, b"hello"), w(C1, "a", 5000, b"world")])).await.unwrap();
        let got = s.read(&C1, "a", 0, 0).await.unwrap();
        assert_eq!(got.len(), 5005);
        assert_eq!(&got[..5], b"hello");
        assert!(got[5..5000].iter().all(|&b| b == 0), "the gap reads as zeros");
        assert_eq!(&got[5000..], b"world");
        assert_eq!(s.read(&C1, "a", 4998, 4).await.unwrap(), vec![0, 0, b'w', b'o']);
        // Overwrite inside a block keeps the rest of it.
        s.submit(txn(vec![w(C1, "a", 1, b"EL")])).await.unwrap();
        assert_eq!(&s.read(&C1, "a", 0, 5).await.unwrap(), b"hELlo");
        // Zero, truncate, clone.
        s.submit(txn(vec![Op::Zero { coll: C1, obj: "a".into(), offset: 2, len: 2 }])).await.unwrap();
        assert_eq!(&s.read(&C1, "a", 0, 5).await.unwrap(), b"hE\0\0o");
        s.submit(txn(vec![Op::CloneRange { coll: C1, src: "a".into(), dst: "b".into(), src_off: 0, len: 5, dst_off: 10 }])).await.unwrap();
        assert_eq!(&s.read(&C1, "b", 10, 5).await.unwrap(), b"hE\0\0o");
        s.submit(txn(vec![Op::Truncate { coll: C1, obj: "a".into(), size: 3 }])).await.unwrap();
        assert_eq!(s.stat(&C1, "a").unwrap().0, 3);
        s.submit(txn(vec![Op::Truncate { coll: C1, obj: "a".into(), size: 6000 }])).await.unwrap();
        let grown = s.read(&C1, "a", 0, 0).await.unwrap();
        assert_eq!(&grown[..3], b"hE\0");
        assert!(grown[3..].iter().all(|&b| b == 0), "truncate then extend reads zeros");
        // Xattrs and omap.
        let mut kv = BTreeMap::new();
        for i in 0..10 {
            kv.insert(format!("k{i:02}"), vec![i as u8]);
        }
        s.submit(txn(vec![
            Op::SetAttr { coll: C1, obj: "a".into(), name: "user.x".into(), value: b"1".to_vec() },
            Op::OmapSetKeys { coll: C1, obj: "a".into(), entries: kv },
            Op::OmapSetHeader { coll: C1, obj: "a".into(), value: b"hdr".to_vec() },
        ]))
        .await
        .unwrap();
        assert_eq!(s.getattr(&C1, "a", "user.x").unwrap(), b"1");
        s.submit(txn(vec![Op::OmapRmRange { coll: C1, obj: "a".into(), start: "k03".into(), end: "k07".into() }])).await.unwrap();
        let (hdr, omap) = s.omap_get(&C1, "a").unwrap();
        assert_eq!(hdr, b"hdr");
        assert_eq!(omap.keys().cloned().collect::<Vec<_>>(), vec!["k00", "k01", "k02", "k07", "k08", "k09"]);
        let (page, more) = s.omap_range(&C1, "a", "k01", 2).unwrap();
        assert_eq!((page.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), more), (vec!["k02", "k07"], true));
        assert_eq!(s.submit(txn(vec![Op::RmAttr { coll: C1, obj: "a".into(), name: "nope".into() }])).await, Err(StoreError::NoAttr("nope".into())));
        // A failing op leaves the whole transaction unapplied.
        let before = s.read(&C1, "b", 0, 0).await.unwrap();
        let r = s.submit(txn(vec![w(C1, "b", 0, b"XXXX"), Op::Remove { coll: C1, obj: "ghost".into() }])).await;
        assert_eq!(r, Err(StoreError::NoObject(C1, "ghost".into())));
        assert_eq!(s.read(&C1, "b", 0, 0).await.unwrap(), before, "atomic: the write did not happen");
        // Listing in stable order with a cursor.
        s.submit(txn((0..20).map(|i| Op::Touch { coll: C1, obj: format!("obj{i:02}") }).collect())).await.unwrap();
        let (first, more) = s.list(&C1, "", 5).unwrap();
        assert_eq!(first, vec!["a", "b", "obj00", "obj01", "obj02"]);
        assert!(more);
        let (next, _) = s.list(&C1, "obj02", 2).unwrap();
        assert_eq!(next, vec!["obj03", "obj04"]);
        assert_eq!(s.submit(txn(vec![Op::RemoveCollection(C1)])).await, Err(StoreError::CollectionNotEmpty(C1)));
        s.invariants();
    });
    // Remount: same contents.
    let snapshot = s.meta_snapshot();
    block_on(s.umount()).unwrap();
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    assert_eq!(s.meta_snapshot(), snapshot);
    assert_eq!(&block_on(s.read(&C1, "a", 0, 3)).unwrap(), b"hE\0");
}

#[test]
fn mount_refuses_other_devices() {
    let (dev, s) = fresh(8 << 20, 256 << 10);
    block_on(s.umount()).unwrap();
    let wrong_osd = Expect { osd: 4, ..expect() };
    assert!(matches!(block_on(Store::mount(dev.clone(), 0, wrong_osd)), Err(StoreError::WrongDevice(_))));
    let wrong_shards = Expect { shards: 2, ..expect() };
    assert!(matches!(block_on(Store::mount(dev.clone(), 0, wrong_shards)), Err(StoreError::WrongDevice(_))));
    let wrong_cluster = Expect { fsid: Some([1; 16]), ..expect() };
    assert!(matches!(block_on(Store::mount(dev.clone(), 0, wrong_cluster)), Err(StoreError::WrongDevice(_))));
    let blank = SimDevice::new(8 << 20);
    assert!(matches!(block_on(Store::mount(blank, 0, expect())), Err(StoreError::WrongDevice(_))));
    // Several shards: each region mounts on its own.
    let dev = SimDevice::new(32 << 20);
    block_on(Store::mkfs(&dev, &MkfsOptions { shards: 4, ..opts(256 << 10) })).unwrap();
    for shard in 0..4 {
        let s = block_on(Store::mount(dev.clone(), shard, Expect { shards: 4, ..expect() })).unwrap();
        block_on(s.submit(txn(vec![Op::CreateCollection(CollId { pool: 2, seed: shard })]))).unwrap();
        block_on(s.umount()).unwrap();
    }
    let s = block_on(Store::mount(dev.clone(), 2, Expect { shards: 4, ..expect() })).unwrap();
    assert_eq!(s.collections(), vec![CollId { pool: 2, seed: 2 }], "regions do not see each other");
}

#[test]
fn full_store_refuses_writes_then_recovers_after_removes() {
    let (_dev, s) = fresh(8 << 20, 256 << 10);
    block_on(async {
        s.submit(txn(vec![Op::CreateCollection(C1)])).await.unwrap();
        let chunk = vec![7u8; 64 << 10];
        let mut n = 0;
        loop {
            match s.submit(txn(vec![w(C1, &format!("f{n}"), 0, &chunk)])).await {
                Ok(()) => n += 1,
                Err(StoreError::NoSpace) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(n < 1000);
        }
        assert!(n > 5);
        let st = s.statfs();
        assert!(st.available_bytes < chunk.len() as u64);
        // Reads and removes still work; removing frees space.
        assert_eq!(s.read(&C1, "f0", 0, 0).await.unwrap(), chunk);
        s.submit(txn(vec![Op::Remove { coll: C1, obj: "f0".into() }, Op::Remove { coll: C1, obj: "f1".into() }])).await.unwrap();
        assert!(s.statfs().available_bytes >= 2 * chunk.len() as u64);
        s.submit(txn(vec![w(C1, "again", 0, &chunk)])).await.unwrap();
        s.invariants();
    });
}

#[test]
fn bit_rot_is_an_error_and_scrub_names_the_object() {
    let (dev, s) = fresh(8 << 20, 256 << 10);
    block_on(async {
        s.submit(txn(vec![Op::CreateCollection(C1), w(C1, "good", 0, &[1; 8192]), w(C1, "bad", 0, &[2; 8192])])).await.unwrap();
    });
    block_on(s.umount()).unwrap();
    // Find "bad"'s second block on the medium and flip a bit.
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    let meta = s.meta_snapshot();
    let b = meta.onode(&C1, "bad").unwrap().blocks[&1].dev;
    let sb = super::layout::Superblock { fsid: [9; 16], osd: 3, shards: 1, device_bytes: dev.len_bytes(), osd_uuid: [8; 16] };
    let (base, _) = sb.region(0);
    let h = super::layout::RegionHeader::decode(&block_on(super::device::Device::read(&dev, base, BLOCK)).unwrap(), &[9; 16], 3).unwrap();
    dev.flip_bit(base + h.data_offset() + b * BLOCK as u64 + 100, 3);
    let err = block_on(s.read(&C1, "bad", 0, 0)).unwrap_err();
    assert_eq!(err, StoreError::Checksum { coll: C1, obj: "bad".into(), block: 1 });
    assert_eq!(err.errno(), sepia_proto::errno::Errno::Io);
    assert_eq!(block_on(s.read(&C1, "bad", 0, 4096)).unwrap(), vec![2; 4096], "the good block still reads");
    assert_eq!(block_on(s.read(&C1, "good", 0, 0)).unwrap(), vec![1; 8192]);
    assert_eq!(block_on(s.deep_scrub()), vec![(C1, "bad".to_string(), 1)]);
    assert!(s.counters().checksum_errors >= 2);
}

#[test]
fn journal_wraps_many_times_and_everything_survives() {
    let (dev, s) = fresh(16 << 20, 64 << 10);
    let mut rng = StdRng::seed_from_u64(7);
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    block_on(async {
        s.submit(txn(vec![Op::CreateCollection(C1)])).await.unwrap();
        for i in 0..2000u32 {
            let name = format!("o{}", rng.gen_range(0..50));
            let data: Vec<u8> = (0..rng.gen_range(1..9000)).map(|j| (i as usize + j) as u8).collect();
            s.submit(txn(vec![Op::Write { coll: C1, obj: name.clone(), offset: 0, data: data.clone() }, Op::Truncate { coll: C1, obj: name.clone(), size: data.len() as u64 }])).await.unwrap();
            model.insert(name, data);
        }
    });
    // The 64 KiB journal wrapped hundreds of times, mostly into deltas;
    // the 2 MiB slot filled with them, forcing full checkpoints too.
    let c = s.counters();
    assert!(c.deltas > 100 && c.checkpoints >= 1, "{c:?}");
    drop(s);
    // No clean unmount: replay from the last checkpoint.
    let s = block_on(Store::mount(dev.crash(CrashPlan { seed: 1 }), 0, expect())).unwrap();
    for (name, data) in &model {
        assert_eq!(&block_on(s.read(&C1, name, 0, 0)).unwrap(), data, "{name}");
    }
    s.invariants();
}

#[test]
fn memory_per_object_and_per_omap_key_is_bounded_and_reported() {
    let (_dev, s) = fresh(64 << 20, 1 << 20);
    block_on(async {
        s.submit(txn(vec![Op::CreateCollection(C1)])).await.unwrap();
        let base = s.memory_usage();
        for i in 0..1000 {
            s.submit(txn(vec![w(C1, &format!("rbd_data.1234.{i:016x}"), 0, &[1; 4096])])).await.unwrap();
        }
        let per_object = (s.memory_usage() - base) / 1000;
        // The same again with one small xattr each (an OSD's version
        // record): the attr map's first node.
        let before = s.memory_usage();
        for i in 0..1000 {
            let obj = format!("rbd_data.5678.{i:016x}");
            s.submit(txn(vec![w(C1, &obj, 0, &[1; 4096]), Op::SetAttr { coll: C1, obj, name: "\0ver".into(), value: vec![7; 12] }])).await.unwrap();
        }
        let per_object_with_attr = (s.memory_usage() - before) / 1000;
        let mut kv = BTreeMap::new();
        for i in 0..1000 {
            kv.insert(format!("key{i:06}"), vec![0u8; 16]);
        }
        let before = s.memory_usage();
        s.submit(txn(vec![Op::OmapSetKeys { coll: C1, obj: "omap".into(), entries: kv }])).await.unwrap();
        let per_key = (s.memory_usage() - before) / 1000;
        eprintln!("metadata memory: {per_object} bytes per 4 KiB object, {per_object_with_attr} with one 12-byte xattr, {per_key} bytes per omap key (9-byte key, 16-byte value)");
        assert!(per_object < 640, "{per_object}");
        assert!(per_object_with_attr < 1200, "{per_object_with_attr}");
        assert!(per_object_with_attr > per_object + 512, "an object's first xattr costs a whole B-tree node: {per_object_with_attr}");
        assert!(per_key < 256, "{per_key}");
    });
}

#[test]
fn a_record_that_outlived_its_lost_predecessor_is_never_replayed() {
    // Two records in flight together; the power fails; the device had
    // finished the second but not the first. Mount must stop at the first
    // (the second was never acknowledged), and after more writes and a
    // second crash the stale second record must still never pass for the
    // successor of a new record written where the lost one was.
    let (dev, s) = fresh(16 << 20, 1 << 20);
    block_on(s.submit(txn(vec![Op::CreateCollection(C1)]))).unwrap();
    block_on(s.sync_checkpoint()).unwrap();
    // Five blocks each: two records (one inline record holds at most 8).
    let five = |obj: &str, fill: u8| txn(vec![w(C1, obj, 0, &vec![fill; 5 * BLOCK])]);
    let (lost, outlived) = block_on(async {
        let a = s.enqueue(five("lost", 1)).await.unwrap();
        let b = s.enqueue(five("outlived", 2)).await.unwrap();
        dev.fail_after(0);
        (s.durable(a).await, s.durable(b).await)
    });
    assert!(lost.is_err() && outlived.is_err(), "power failed before either completed");
    assert_eq!(dev.in_flight_writes(), 2, "both records were in flight together: {:?}", s.counters());
    drop(s);
    let dev = dev.crash_keeping_in_flight(&[false, true]);
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    assert!(s.list(&C1, "", 10).unwrap().0.is_empty(), "neither write was acknowledged nor replayable");
    // The same shape again, now acknowledged: its record lands where the
    // lost one was, with the same length.
    block_on(s.submit(five("again", 3))).unwrap();
    let expected = logical(&s);
    drop(s);
    let s = block_on(Store::mount(dev.crash(CrashPlan { seed: 5 }), 0, expect())).unwrap();
    s.invariants();
    let got = logical(&s);
    assert!(got == expected, "a stale record came back: objects {:?}", got.keys().map(|(_, o)| o.as_str()).collect::<Vec<_>>());
}

// ---- crash consistency ----

type Logical = BTreeMap<(CollId, String), (Vec<u8>, BTreeMap<String, Vec<u8>>, Vec<u8>, BTreeMap<String, Vec<u8>>)>;

fn logical(s: &Store<SimDevice>) -> Logical {
    let mut out = BTreeMap::new();
    for c in s.collections() {
        let (objs, _) = s.list(&c, "", usize::MAX).unwrap();
        for o in objs {
            let data = block_on(s.read(&c, &o, 0, 0)).unwrap_or_else(|e| panic!("read {c}/{o} after crash: {e}"));
            let (hdr, omap) = s.omap_get(&c, &o).unwrap();
            out.insert((c, o.clone()), (data, s.getattrs(&c, &o).unwrap(), hdr, omap));
        }
    }
    out
}

fn random_txn(rng: &mut StdRng, objs: &[String]) -> Transaction {
    let mut ops = Vec::new();
    for _ in 0..rng.gen_range(1..4) {
        let coll = if rng.gen_bool(0.5) { C1 } else { C2 };
        let obj = objs[rng.gen_range(0..objs.len())].clone();
        let op = match rng.gen_range(0..10) {
            0..=3 => {
                let len = rng.gen_range(1..12_000);
                let fill = rng.gen::<u8>();
                Op::Write { coll, obj, offset: rng.gen_range(0..20_000), data: vec![fill; len] }
            }
            4 => Op::Truncate { coll, obj, size: rng.gen_range(0..20_000) },
            5 => Op::Zero { coll, obj, offset: rng.gen_range(0..20_000), len: rng.gen_range(1..9_000) },
            6 => Op::Remove { coll, obj },
            7 => Op::SetAttr { coll, obj, name: format!("a{}", rng.gen_range(0..3)), value: vec![rng.gen(); rng.gen_range(0..100)] },
            8 => {
                let mut e = BTreeMap::new();
                e.insert(format!("k{}", rng.gen_range(0..5)), vec![rng.gen(); 8]);
                Op::OmapSetKeys { coll, obj, entries: e }
            }
            _ => {
                let dst = objs[rng.gen_range(0..objs.len())].clone();
                Op::CloneRange { coll, src: obj, dst, src_off: rng.gen_range(0..8_000), len: rng.gen_range(0..8_000), dst_off: rng.gen_range(0..8_000) }
            }
        };
        ops.push(op);
    }
    Transaction { ops }
}

/// A fresh oracle store holding `state` (what a crashed store recovered),
/// so the next transactions are judged against the same starting point.
fn oracle_with(state: &Logical) -> Store<SimDevice> {
    let (_dev, oracle) = fresh(8 << 20, 1 << 20);
    block_on(oracle.submit(txn(vec![Op::CreateCollection(C1), Op::CreateCollection(C2)]))).unwrap();
    for ((coll, obj), (data, attrs, header, omap)) in state {
        let (coll, obj) = (*coll, obj.clone());
        let mut ops = vec![Op::Touch { coll, obj: obj.clone() }, Op::Write { coll, obj: obj.clone(), offset: 0, data: data.clone() }];
        ops.extend(attrs.iter().map(|(k, v)| Op::SetAttr { coll, obj: obj.clone(), name: k.clone(), value: v.clone() }));
        ops.push(Op::OmapSetHeader { coll, obj: obj.clone(), value: header.clone() });
        ops.push(Op::OmapSetKeys { coll, obj: obj.clone(), entries: omap.clone() });
        block_on(oracle.submit(txn(ops))).unwrap();
    }
    assert_eq!(&logical(&oracle), state, "the oracle holds the recovered state");
    oracle
}

/// Submits a batch of transactions concurrently (they meet in group
/// commits and pipelined records).
/// Submits a batch concurrently. With `dedicated`, a committer task of
/// its own (`run_committer`, as the OSD runs it) commits, polled beside
/// the submits until every one is answered and the committer is idle
/// again (a committer dropped mid-commit would leave the store committing).
fn submit_all(s: &Store<SimDevice>, batch: &[(Transaction, Vec<String>)], dedicated: bool) -> Vec<Result<(), StoreError>> {
    let mut futs: Vec<_> = batch.iter().map(|(t, _)| Box::pin(s.submit(t.clone()))).collect();
    let mut done: Vec<Option<Result<(), StoreError>>> = vec![None; futs.len()];
    let mut committer = dedicated.then(|| Box::pin(s.run_committer()));
    block_on(std::future::poll_fn(|cx| {
        if let Some(c) = committer.as_mut() {
            assert!(c.as_mut().poll(cx).is_pending(), "the committer runs for as long as it is polled");
        }
        for (i, f) in futs.iter_mut().enumerate() {
            if done[i].is_none() {
                if let std::task::Poll::Ready(r) = f.as_mut().poll(cx) {
                    done[i] = Some(r);
                }
            }
        }
        if done.iter().all(Option::is_some) && !s.committing_now() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }));
    done.into_iter().map(|r| r.expect("finished")).collect()
}

/// A block freed and planned again while its deferred flush is in
/// flight holds new content: the flush's end must not count that as
/// written, or the new content never reaches the data area and a remount
/// reads the old block under the new crc.
#[test]
fn a_block_reused_while_its_flush_is_in_flight_keeps_its_new_content() {
    use futures_lite::future::poll_once;
    // Roomy: no wrap (which waits for the flush) in the middle.
    let journal = 1 << 20;
    let probe = SimDevice::new(16 << 20);
    block_on(Store::mkfs(&probe, &opts(journal))).unwrap();
    let total = block_on(Store::mount(probe.clone(), 0, expect())).unwrap().statfs().total_bytes;
    // The smallest region, filled but for two blocks: each overwrite
    // takes the block the one before freed.
    let dev = SimDevice::new(probe.len_bytes() - total + 16 * BLOCK as u64);
    block_on(Store::mkfs(&dev, &opts(journal))).unwrap();
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    assert_eq!(s.statfs().total_bytes, 16 * BLOCK as u64);
    block_on(s.submit(txn(vec![Op::CreateCollection(C1)]))).unwrap();
    for i in 0..14 {
        block_on(s.submit(txn(vec![w(C1, &format!("fill{i}"), 0, &[7; BLOCK])]))).unwrap();
    }
    assert_eq!(s.statfs().available_bytes, 2 * BLOCK as u64);
    s.set_deferred_blocks_max(0);
    dev.set_write_polls(50);
    let content = |b: u8| vec![b; BLOCK];
    // The first submit drives the committer, which flushes its block
    // once the record is durable.
    let mut first = Box::pin(s.submit(txn(vec![w(C1, "a", 0, &content(1))])));
    while s.counters().deferred_flushes == 0 {
        assert!(block_on(poll_once(&mut first)).is_none());
    }
    for b in [2, 3] {
        let mut next = Box::pin(s.submit(txn(vec![w(C1, "a", 0, &content(b))])));
        loop {
            if let Some(r) = block_on(poll_once(&mut next)) {
                r.unwrap();
                break;
            }
            assert!(block_on(poll_once(&mut first)).is_none(), "the flush of the first content is still in flight");
        }
    }
    block_on(first).unwrap();
    assert_eq!(block_on(s.read(&C1, "a", 0, 0)).unwrap(), content(3));
    block_on(s.umount()).unwrap();
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    assert_eq!(block_on(s.read(&C1, "a", 0, 0)), Ok(content(3)));
    assert_eq!(s.counters().checksum_errors, 0);
}

/// A deferred flush trickles: however many runs it holds, at most
/// `flush_writes_in_flight_max` of its writes are on the device at once
/// (journal records must not queue behind it), and every block reaches
/// the data area.
#[test]
fn a_deferred_flush_keeps_few_writes_in_flight_and_writes_every_block() {
    use crate::objstore::limits::{flush_run_blocks_max, flush_writes_in_flight_max};
    let dev = SimDevice::new(64 << 20);
    block_on(Store::mkfs(&dev, &opts(16 << 20))).unwrap();
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    block_on(s.submit(txn(vec![Op::CreateCollection(C1)]))).unwrap();
    // Neighbouring blocks: several runs of the longest kind, and more
    // runs than may be in flight.
    let objects = flush_run_blocks_max * (flush_writes_in_flight_max + 3) + 5;
    s.set_deferred_blocks_max(objects + 1);
    for i in 0..objects {
        block_on(s.submit(txn(vec![w(C1, &format!("o{i}"), 0, &[(i % 251) as u8; BLOCK])]))).unwrap();
    }
    assert_eq!(s.counters().deferred_flushes, 0, "nothing flushed yet");
    dev.set_write_polls(3);
    dev.take_plain_writes_peak();
    s.set_deferred_blocks_max(0);
    block_on(s.submit(txn(vec![w(C1, "last", 0, &[9; BLOCK])]))).unwrap();
    assert!(s.counters().deferred_flushes >= 1);
    // Waits for the flush, which runs beside the committer.
    block_on(s.umount()).unwrap();
    let peak = dev.take_plain_writes_peak();
    assert!((2..=flush_writes_in_flight_max).contains(&peak), "{peak} flush writes at once");
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    for i in 0..objects {
        assert_eq!(block_on(s.read(&C1, &format!("o{i}"), 0, 0)).unwrap(), vec![(i % 251) as u8; BLOCK], "o{i}");
    }
    assert_eq!(s.counters().checksum_errors, 0);
}

/// A delta wrap saves only what is already durable, so it holds no plan
/// lock: transactions are planned and queued while its delta is written
/// (they go to the fresh journal after it), and all of them survive a
/// remount.
#[test]
fn planning_goes_on_while_a_delta_wrap_is_written() {
    use futures_lite::future::poll_once;
    let dev = SimDevice::new(32 << 20);
    block_on(Store::mkfs(&dev, &opts(1 << 20))).unwrap();
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    block_on(s.submit(txn(vec![Op::CreateCollection(C1)]))).unwrap();
    // Metadata much bigger than a journal's worth of ops: wraps write
    // deltas, not full checkpoints.
    let entries: BTreeMap<String, Vec<u8>> = (0..256).map(|i| (format!("k{i}"), vec![1; 4096])).collect();
    block_on(s.submit(txn(vec![Op::OmapSetKeys { coll: C1, obj: "bulk".into(), entries }]))).unwrap();
    block_on(s.sync_checkpoint()).unwrap();
    // Every device write takes a few polls: the test polls in between.
    dev.set_write_polls(4);
    let (deltas_at_start, checkpoints_at_start) = (s.counters().deltas, s.counters().checkpoints);
    let content = |i: usize| vec![(i % 251) as u8; BLOCK];
    let (mut committed, mut queued) = (0usize, Vec::new());
    while s.counters().deltas < deltas_at_start + 2 {
        assert!(committed < 2000, "no delta wrap");
        let mut commit = Box::pin(s.submit(txn(vec![w(C1, &format!("c{committed}"), 0, &content(committed))])));
        loop {
            if let Some(r) = block_on(poll_once(&mut commit)) {
                r.unwrap();
                break;
            }
            // Whatever the committer is doing (a record, a flush, a delta),
            // another transaction is planned and queued in one poll. (The
            // committer goes on while anything is queued.)
            if s.counters().deltas >= deltas_at_start + 2 {
                continue;
            }
            let name = format!("q{}", queued.len());
            let q = block_on(poll_once(Box::pin(s.enqueue(txn(vec![w(C1, &name, 0, &content(queued.len()))])))));
            queued.push(q.expect("enqueue waited for the committer").unwrap());
        }
        committed += 1;
    }
    assert_eq!(s.counters().checkpoints, checkpoints_at_start, "the wraps were deltas");
    let n = queued.len();
    assert!(n > 0);
    for q in queued {
        block_on(s.durable(q)).unwrap();
    }
    block_on(s.umount()).unwrap();
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    for (prefix, count) in [("c", committed), ("q", n)] {
        for i in 0..count {
            assert_eq!(block_on(s.read(&C1, &format!("{prefix}{i}"), 0, 0)), Ok(content(i)), "{prefix}{i}");
        }
    }
}

/// With a committer task of its own, a transaction is answered once its
/// record is durable, even while others keep coming. (A waiter that
/// drives the commit itself is held until the queue runs dry.)
#[test]
fn a_dedicated_committer_answers_each_transaction_once_durable() {
    use futures_lite::future::poll_once;
    let dev = SimDevice::new(16 << 20);
    block_on(Store::mkfs(&dev, &opts(1 << 20))).unwrap();
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    block_on(s.submit(txn(vec![Op::CreateCollection(C1)]))).unwrap();
    dev.set_write_polls(2);
    let mut committer = Box::pin(s.run_committer());
    let mut first = Box::pin(s.submit(txn(vec![w(C1, "first", 0, &[1; BLOCK])])));
    let mut others = Vec::new();
    loop {
        assert!(block_on(poll_once(&mut committer)).is_none(), "the committer runs for as long as it is polled");
        if let Some(r) = block_on(poll_once(&mut first)) {
            r.unwrap();
            break;
        }
        assert!(others.len() < 200, "the first transaction waited for the queue to run dry");
        // The queue never runs dry (planning a whole-block write waits for
        // nothing but the plan lock).
        let mut enqueue = Box::pin(s.enqueue(txn(vec![w(C1, &format!("o{}", others.len()), 0, &[2; BLOCK])])));
        others.push(block_on(poll_once(&mut enqueue)).expect("planned in one poll").unwrap());
    }
    assert!(!others.is_empty());
    // A full checkpoint (what a clean shutdown asks for) gets its turn
    // beside the committer, and so does everything queued.
    let n = others.len();
    let mut waits: Vec<_> = others.into_iter().map(|q| Box::pin(s.durable(q))).collect();
    let mut checkpoint = Box::pin(s.sync_checkpoint());
    let mut checkpointed = false;
    for _ in 0..10_000 {
        assert!(block_on(poll_once(&mut committer)).is_none());
        if !checkpointed {
            if let Some(r) = block_on(poll_once(&mut checkpoint)) {
                r.unwrap();
                checkpointed = true;
            }
        }
        waits.retain_mut(|d| match block_on(poll_once(d)) {
            Some(r) => {
                r.unwrap();
                false
            }
            None => true,
        });
        if checkpointed && waits.is_empty() {
            break;
        }
    }
    assert!(checkpointed && waits.is_empty(), "checkpoint {checkpointed}, {} waits left", waits.len());
    drop(committer);
    for i in 0..n {
        assert_eq!(block_on(s.read(&C1, &format!("o{i}"), 0, 0)), Ok(vec![2; BLOCK]));
    }
}

/// One seeded run of up to three crashes, each followed by a remount that
/// must hold every acknowledged transaction and no half-applied one; the
/// next phase goes on from what was recovered (so records left behind by
/// one crash meet the journal of the next). Returns the store's counters
/// summed over the phases.
fn crash_run(seed: u64) -> Counters {
    let mut rng = StdRng::seed_from_u64(seed);
    // Small journals wrap often; small slots fill with deltas and force
    // full checkpoints between them.
    let journal = (rng.gen_range(2..16) * 16) << 10;
    let slot = rng.gen_range(2..=16) * (64 << 10);
    let mut dev = SimDevice::new(8 << 20);
    block_on(Store::mkfs(&dev, &MkfsOptions { checkpoint_bytes: Some(slot), ..opts(journal) })).unwrap();
    let mut s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    block_on(s.submit(txn(vec![Op::CreateCollection(C1), Op::CreateCollection(C2)]))).unwrap();
    let mut oracle = oracle_with(&logical(&s));
    let mut before = logical(&oracle);
    let names: Vec<String> = (0..24).map(|i| format!("o{i}")).collect();
    let mut total = Counters::default();
    for phase in 0..rng.gen_range(1..=3) {
        let deltas_max = rng.gen_range(1..6);
        s.set_deltas_per_base_max(deltas_max);
        s.set_deferred_blocks_max(rng.gen_range(0..12));
        // What mount itself wrote does not count as reaching a path.
        let at_mount = s.counters();
        let batches = rng.gen_range(1..25);
        let crash_batch = rng.gen_range(0..batches);
        for b in 0..=crash_batch {
            // Transactions of one batch touch disjoint objects, so any
            // subset of them applied gives a well-defined expected state
            // per object.
            let mut pool = names.clone();
            let mut batch = Vec::new();
            for _ in 0..rng.gen_range(1..6) {
                if pool.len() < 2 {
                    break;
                }
                let take = rng.gen_range(1..=3.min(pool.len()));
                let mine: Vec<String> = (0..take).map(|_| pool.remove(rng.gen_range(0..pool.len()))).collect();
                batch.push((random_txn(&mut rng, &mine), mine));
            }
            if b == crash_batch {
                dev.fail_after(rng.gen_range(0..12));
            }
            // Odd seeds commit as the OSD does, with a committer task.
            let results = submit_all(&s, &batch, seed % 2 == 1);
            let oracle_results: Vec<Result<(), StoreError>> = batch.iter().map(|(t, _)| block_on(oracle.submit(t.clone()))).collect();
            // A transaction may be refused, but nothing in a store that
            // did not rot may ever fail a checksum.
            for r in results.iter().take(if b < crash_batch { usize::MAX } else { 0 }).chain(&oracle_results) {
                assert!(!matches!(r, Err(StoreError::Checksum { .. })), "seed {seed}: phase {phase} batch {b}: {r:?}");
            }
            let after = logical(&oracle);
            if b < crash_batch {
                for (i, r) in results.iter().enumerate() {
                    assert_eq!(r.is_ok(), oracle_results[i].is_ok(), "seed {seed}: phase {phase} batch {b} txn {i}: store {r:?} vs oracle {:?}", oracle_results[i]);
                }
                before = after;
                continue;
            }
            let c = s.counters();
            total.deltas += c.deltas - at_mount.deltas;
            total.checkpoints += c.checkpoints - at_mount.checkpoints;
            total.pipelined += c.pipelined - at_mount.pipelined;
            total.deferred_flushes += c.deferred_flushes - at_mount.deferred_flushes;
            drop(s);
            dev = dev.crash(CrashPlan { seed: seed ^ 0xabcd ^ phase });
            let s2 = block_on(Store::mount(dev.clone(), 0, expect())).unwrap_or_else(|e| panic!("seed {seed}: phase {phase}: mount after crash: {e}"));
            s2.invariants();
            let got = logical(&s2);
            let view = |state: &Logical, objs: &[String]| -> Vec<_> {
                state.iter().filter(|((_, o), _)| objs.contains(o)).map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            let mut touched: Vec<String> = Vec::new();
            for (i, (_, mine)) in batch.iter().enumerate() {
                touched.extend(mine.iter().cloned());
                let now = view(&got, mine);
                let was = view(&before, mine);
                let will = view(&after, mine);
                let acked = results[i].is_ok() && oracle_results[i].is_ok();
                if acked {
                    assert_eq!(now, will, "seed {seed}: phase {phase}: acknowledged txn {i} lost");
                } else {
                    assert!(now == was || now == will, "seed {seed}: phase {phase}: txn {i} half applied");
                }
            }
            let rest = |state: &Logical| -> Vec<_> { state.iter().filter(|((_, o), _)| !touched.contains(o)).map(|(k, v)| (k.clone(), v.clone())).collect() };
            assert_eq!(rest(&got), rest(&before), "seed {seed}: phase {phase}: untouched objects changed");
            s = s2;
            oracle = oracle_with(&got);
            before = got;
        }
    }
    total
}

#[test]
fn crash_consistency_over_many_seeds() {
    if let Ok(seed) = std::env::var("SEPIA_STORE_SEED") {
        crash_run(seed.parse().expect("SEPIA_STORE_SEED is a number"));
        return;
    }
    let seeds: u64 = std::env::var("SEPIA_STORE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let (mut with_deltas, mut with_both, mut pipelined, mut flushed) = (0, 0, 0, 0);
    for seed in 0..seeds {
        match std::panic::catch_unwind(|| crash_run(seed)) {
            Ok(c) => {
                with_deltas += u64::from(c.deltas > 0);
                with_both += u64::from(c.deltas > 0 && c.checkpoints > 0);
                pipelined += u64::from(c.pipelined > 0);
                flushed += u64::from(c.deferred_flushes > 0);
            }
            Err(e) => {
                eprintln!("store crash test failed with seed {seed}; replay with SEPIA_STORE_SEED={seed}");
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!("{seeds} seeds: {with_deltas} crashed after deltas, {with_both} after deltas and full checkpoints, {pipelined} with records in flight together, {flushed} after deferred flushes");
    // The runs must reach the paths under test, or the test proves little.
    if seeds >= 100 {
        assert!(
            with_deltas * 4 >= seeds && with_both * 20 >= seeds && pipelined * 10 >= seeds && flushed * 10 >= seeds,
            "{with_deltas} / {with_both} / {pipelined} / {flushed} of {seeds}"
        );
    }
}

#[test]
fn eio_is_an_error_never_data_and_a_failed_write_stops_writes() {
    let (dev, s) = fresh(8 << 20, 256 << 10);
    block_on(s.submit(txn(vec![Op::CreateCollection(C1), w(C1, "a", 0, &[1; 8192]), w(C1, "b", 0, &[2; 4096])]))).unwrap();
    block_on(s.umount()).unwrap();
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    // Reads of a block the device cannot read fail with EIO.
    let b = s.meta_snapshot().onode(&C1, "a").unwrap().blocks[&1].dev;
    let sb = super::layout::Superblock { fsid: [9; 16], osd: 3, shards: 1, device_bytes: dev.len_bytes(), osd_uuid: [8; 16] };
    let (base, _) = sb.region(0);
    let h = super::layout::RegionHeader::decode(&block_on(super::device::Device::read(&dev, base, BLOCK)).unwrap(), &[9; 16], 3).unwrap();
    let at = base + h.data_offset() + b * BLOCK as u64;
    dev.inject_eio(at, at + BLOCK as u64);
    let err = block_on(s.read(&C1, "a", 0, 0)).unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err:?}");
    assert_eq!(err.errno(), sepia_proto::errno::Errno::Io);
    assert_eq!(block_on(s.read(&C1, "b", 0, 0)).unwrap(), vec![2; 4096]);
    // A write whose journal record cannot be written fails, and the store
    // then refuses further writes (its memory is ahead of its disk) while
    // reads go on.
    let j = base + h.journal_offset();
    dev.inject_eio(j, j + h.journal_bytes);
    assert!(block_on(s.submit(txn(vec![w(C1, "c", 0, b"new")]))).is_err());
    assert!(matches!(block_on(s.submit(txn(vec![w(C1, "d", 0, b"x")]))), Err(StoreError::Failed(_))));
    assert_eq!(block_on(s.read(&C1, "b", 0, 0)).unwrap(), vec![2; 4096]);
    // A remount on a healthy device comes back without the failed write.
    drop(s);
    let healthy = dev.crash(CrashPlan { seed: 3 });
    let s = block_on(Store::mount(healthy, 0, expect())).unwrap();
    assert!(s.stat(&C1, "c").is_err());
    assert_eq!(block_on(s.read(&C1, "a", 0, 0)).unwrap(), vec![1; 8192]);
}

#[test]
fn metadata_that_would_outgrow_a_checkpoint_is_refused_and_removes_make_room() {
    // A small checkpoint slot, plenty of data space: metadata fills first.
    let dev = SimDevice::new(64 << 20);
    let small = MkfsOptions { checkpoint_bytes: Some(256 << 10), ..opts(1 << 20) };
    block_on(Store::mkfs(&dev, &small)).unwrap();
    let s = block_on(Store::mount(dev.clone(), 0, expect())).unwrap();
    block_on(async {
        s.submit(txn(vec![Op::CreateCollection(C1)])).await.unwrap();
        let mut made = 0;
        let refused = loop {
            let name = format!("object-with-a-longish-name-{made:06}");
            match s.submit(txn(vec![w(C1, &name, 0, b"x")])).await {
                Ok(()) => made += 1,
                Err(e) => break e,
            }
            assert!(made < 100_000, "metadata never filled");
        };
        assert!(matches!(refused, StoreError::MetadataFull(_)), "{refused:?}");
        assert_eq!(refused.errno(), sepia_proto::errno::Errno::NoSpc);
        assert!(made > 100, "only {made} objects fit");
        // Refused because it is full, not because estimates piled up over
        // journal wraps that wrote deltas: the slot is mostly used.
        let actual = rkyv::to_bytes::<rkyv::rancor::Error>(&s.meta_snapshot()).unwrap().len() as u64;
        let limit = (256 << 10) - BLOCK as u64 - (256 << 10) / super::limits::ckpt_reserve_fraction;
        eprintln!("metadata full at {actual} of {limit} bytes, {made} objects, {:?}", s.counters());
        assert!(actual * 4 >= limit * 3, "refused at {actual} of {limit} bytes");
        // The store did not stop: reads work, checkpoints fit, removes go on.
        assert_eq!(s.read(&C1, "object-with-a-longish-name-000000", 0, 0).await.unwrap(), b"x");
        s.sync_checkpoint().await.unwrap();
        for i in 0..made / 2 {
            s.submit(txn(vec![Op::Remove { coll: C1, obj: format!("object-with-a-longish-name-{i:06}") }])).await.unwrap();
        }
        s.sync_checkpoint().await.unwrap();
        s.submit(txn(vec![w(C1, "after-removes", 0, b"room again")])).await.unwrap();
        assert_eq!(s.counters().metadata_full, 1);
    });
    drop(s);
    // Everything kept is still there after a remount.
    let s = block_on(Store::mount(dev, 0, expect())).unwrap();
    block_on(async {
        assert_eq!(s.read(&C1, "after-removes", 0, 0).await.unwrap(), b"room again");
    });
}

/// The serialized size of the store's metadata: what a full checkpoint
/// would write.
fn meta_bytes(s: &Store<SimDevice>) -> u64 {
    rkyv::to_bytes::<rkyv::rancor::Error>(&s.meta_snapshot()).unwrap().len() as u64
}

#[test]
fn metadata_bound_never_falls_below_the_truth_under_omap_churn() {
    // Random omap and xattr sets, overwrites, removes, ranges, clears and
    // object removes, several per transaction and touching the same keys: the
    // bound the store refuses writes by must stay an upper bound.
    for seed in 0..100u64 {
        let (_dev, s) = fresh(32 << 20, 1 << 20);
        let mut rng = StdRng::seed_from_u64(seed);
        block_on(async {
            s.submit(txn(vec![Op::CreateCollection(C1)])).await.unwrap();
            for _ in 0..150 {
                let mut ops = Vec::new();
                for _ in 0..rng.gen_range(1..6) {
                    let obj = format!("o{}", rng.gen_range(0..3));
                    let key = |rng: &mut StdRng| format!("{}{:03}", if rng.gen_bool(0.5) { "k" } else { "a-much-longer-key-name." }, rng.gen_range(0..40));
                    let op = match rng.gen_range(0..12) {
                        0..=4 => {
                            let entries = (0..rng.gen_range(1..4)).map(|_| (key(&mut rng), vec![7u8; rng.gen_range(0..300)])).collect();
                            Op::OmapSetKeys { coll: C1, obj: obj.clone(), entries }
                        }
                        5 | 6 => Op::OmapRmKeys { coll: C1, obj: obj.clone(), keys: (0..rng.gen_range(1..4)).map(|_| key(&mut rng)).collect() },
                        7 => {
                            let (a, b) = (key(&mut rng), key(&mut rng));
                            Op::OmapRmRange { coll: C1, obj: obj.clone(), start: a.clone().min(b.clone()), end: a.max(b) }
                        }
                        8 => Op::OmapClear { coll: C1, obj: obj.clone() },
                        9 => Op::Remove { coll: C1, obj: obj.clone() },
                        10 => Op::SetAttr { coll: C1, obj: obj.clone(), name: key(&mut rng), value: vec![5; rng.gen_range(0..100)] },
                        _ => Op::RmAttr { coll: C1, obj: obj.clone(), name: key(&mut rng) },
                    };
                    // Every op needs the object: touch it first (a remove
                    // then a touch recreates it inside one transaction).
                    ops.push(Op::Touch { coll: C1, obj: obj.clone() });
                    ops.push(op);
                }
                let (b0, a0) = (s.meta_bytes_bound(), meta_bytes(&s));
                let dbg = format!("{ops:?}");
                match s.submit(txn(ops)).await {
                    // Removing an attribute that is not there fails the
                    // transaction, changing nothing.
                    Ok(()) | Err(StoreError::NoAttr(_)) => {}
                    Err(e) => panic!("seed {seed}: {e:?}"),
                }
                let (bound, actual) = (s.meta_bytes_bound(), meta_bytes(&s));
                assert!(bound >= actual, "seed {seed}: bound {bound} below the metadata's {actual} bytes; before {b0} {a0}: {dbg}");
            }
        });
    }
}

#[test]
fn a_pg_log_churn_does_not_drift_the_metadata_bound() {
    // A PG's write: a new log entry, the info and a version key rewritten,
    // the oldest entry trimmed. The metadata stays the same size, so the
    // bound must not climb by the bytes each write sets.
    let (_dev, s) = fresh(64 << 20, 1 << 20);
    block_on(async {
        s.submit(txn(vec![Op::CreateCollection(C1), Op::Touch { coll: C1, obj: "pgmeta".into() }])).await.unwrap();
        // Metadata much bigger than a journal's worth of ops, so wraps
        // write deltas and the bound is not re-measured during the churn.
        for batch in 0..40 {
            let ops = (0..50).map(|i| Op::Touch { coll: C1, obj: format!("an-object-with-a-name-{batch:03}-{i:03}") }).collect();
            s.submit(txn(ops)).await.unwrap();
        }
        s.sync_checkpoint().await.unwrap();
        let checkpoints = s.counters().checkpoints;
        let log_key = |v: u64| format!("log.{v:020}");
        for v in 0..3000u64 {
            let mut ops = vec![Op::OmapSetKeys {
                coll: C1,
                obj: "pgmeta".into(),
                entries: BTreeMap::from([(log_key(v), vec![1; 120]), ("info".into(), vec![2; 60]), (format!("ver.obj{}", v % 50), vec![3; 16])]),
            }];
            if v >= 100 {
                ops.push(Op::OmapRmRange { coll: C1, obj: "pgmeta".into(), start: "log.".into(), end: format!("{}\u{0}", log_key(v - 100)) });
            }
            s.submit(txn(ops)).await.unwrap();
        }
        let (bound, actual) = (s.meta_bytes_bound(), meta_bytes(&s));
        eprintln!("bound {bound}, metadata {actual} bytes, {:?}", s.counters());
        assert_eq!(s.counters().checkpoints, checkpoints, "a full checkpoint re-measured the bound during the churn");
        assert!(s.counters().deltas > 0);
        assert!(bound >= actual);
        // 3000 writes setting ~260 bytes each: a bound counting only growth
        // would be ~800 KiB above the truth.
        assert!(bound - actual < 96 << 10, "bound {bound} drifted from the metadata's {actual} bytes");
    });
}

#[test]
fn compacted_ops_leave_the_same_metadata() {
    // Random runs of touches, sizes, blocks, removes and collection
    // changes over two objects in two collections: applying the compacted
    // ops must leave exactly what applying them all leaves, and the
    // write_full shape must lose its moot touch and size.
    use super::meta::{BlockRef, Meta, PhysOp};
    let mut dropped = 0;
    for seed in 0..2000u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ops = Vec::new();
        for _ in 0..rng.gen_range(1..24) {
            let coll = if rng.gen_bool(0.7) { C1 } else { C2 };
            let obj = format!("o{}", rng.gen_range(0..2));
            ops.push(match rng.gen_range(0..10) {
                0..=2 => PhysOp::Touch { coll, obj, mtime_ms: rng.gen_range(0..1000) },
                3..=5 => PhysOp::SetSize { coll, obj, size: rng.gen_range(0..5) * BLOCK as u64 },
                6 => PhysOp::SetBlocks { coll, obj, blocks: vec![(rng.gen_range(0..4), BlockRef { dev: rng.gen_range(0..1 << 20), crc: 1 })] },
                7 => PhysOp::Remove { coll, obj },
                8 => PhysOp::CreateColl(coll),
                _ => PhysOp::RemoveColl(coll),
            });
        }
        let apply = |ops: &[PhysOp]| {
            let mut meta = Meta::default();
            meta.apply(&PhysOp::CreateColl(C1), &mut Vec::new());
            for op in ops {
                meta.apply(op, &mut Vec::new());
            }
            meta
        };
        let mut compacted = ops.clone();
        super::store::compact_ops(&mut compacted);
        dropped += ops.len() - compacted.len();
        assert_eq!(apply(&compacted), apply(&ops), "seed {seed}: {ops:?}\ncompacted: {compacted:?}");
    }
    assert!(dropped > 1000, "only {dropped} ops dropped over all seeds");
    let (coll, obj) = (C1, "o".to_string());
    let mut write_full = vec![
        PhysOp::Touch { coll, obj: obj.clone(), mtime_ms: 1 },
        PhysOp::DropBlocks { coll, obj: obj.clone(), from: 0, to: u64::MAX },
        PhysOp::SetSize { coll, obj: obj.clone(), size: 0 },
        PhysOp::SetBlocks { coll, obj: obj.clone(), blocks: vec![(0, BlockRef { dev: 7, crc: 1 })] },
        PhysOp::SetSize { coll, obj: obj.clone(), size: BLOCK as u64 },
        PhysOp::Touch { coll, obj: obj.clone(), mtime_ms: 2 },
    ];
    super::store::compact_ops(&mut write_full);
    assert_eq!(
        write_full,
        vec![
            PhysOp::Touch { coll, obj: obj.clone(), mtime_ms: 2 },
            PhysOp::DropBlocks { coll, obj: obj.clone(), from: 0, to: u64::MAX },
            PhysOp::SetBlocks { coll, obj: obj.clone(), blocks: vec![(0, BlockRef { dev: 7, crc: 1 })] },
            PhysOp::SetSize { coll, obj, size: BLOCK as u64 },
        ]
    );
}
