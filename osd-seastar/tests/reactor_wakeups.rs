//! The shard's reactor (our patched glommio, `vendor/README.md`) keeps its
//! timers and its ring-link poll armed across loops. These tests check what
//! a wrongly kept arming would break, each with a deadline so a lost wakeup
//! fails instead of hanging: a parked shard wakes for a message from another
//! thread and for its own timers, a shard never parks while a task is
//! runnable, and a shard that submits storage requests early (the OSD's
//! `--submit-batch`) completes every one of them with the right data.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use sepia_osd::objstore::{DmaDevice, Expect, MkfsOptions, Store};

/// Long enough for a loaded 2-core CI machine; a lost wakeup never ends.
const DEADLINE: Duration = Duration::from_secs(60);

/// The owner the stores of these tests are formatted for.
const STORE_OWNER: Expect = Expect {
    fsid: Some([7; 16]),
    osd: 0,
    shards: 1,
};

/// A store formatted on the preallocated file at `path` (1 MiB journal)
/// and mounted.
async fn fresh_store(path: &Path) -> Store<DmaDevice> {
    let dev = DmaDevice::open(path).await.unwrap();
    let opts = MkfsOptions {
        fsid: [7; 16],
        osd: 0,
        shards: 1,
        osd_uuid: [8; 16],
        journal_bytes: Some(1 << 20),
        checkpoint_bytes: None,
    };
    Store::mkfs(&dev, &opts).await.unwrap();
    Store::mount(dev, 0, STORE_OWNER).await.unwrap()
}

#[test]
fn a_parked_shard_wakes_for_every_message_from_another_thread() {
    const MESSAGES: u32 = 300;
    let (sender, receiver) = shared_channel::new_bounded::<u32>(4);
    let (done_tx, done_rx) = mpsc::channel();
    let receiving = LocalExecutorBuilder::new(Placement::Unbound)
        .name("wake-receiver")
        .spawn(move || async move {
            let receiver = receiver.connect().await;
            let mut next = 0;
            while let Some(n) = receiver.recv().await {
                assert_eq!(n, next, "messages arrive in order");
                next += 1;
            }
            done_tx.send(next).unwrap();
        })
        .unwrap();
    let sending = LocalExecutorBuilder::new(Placement::Unbound)
        .name("wake-sender")
        .spawn(move || async move {
            let sender = sender.connect().await;
            for n in 0..MESSAGES {
                // Gaps of 0-2 ms: the receiver parks between most messages,
                // and its own preemption timer fires now and then.
                if n % 3 != 0 {
                    glommio::timer::sleep(Duration::from_micros(u64::from(n % 7) * 300)).await;
                }
                sender.send(n).await.unwrap();
            }
        })
        .unwrap();
    // Wait on the receiver first: a parked receiver also blocks the sender
    // once the bounded channel is full.
    let received = done_rx
        .recv_timeout(DEADLINE)
        .expect("the receiving shard missed a wakeup and stayed parked");
    assert_eq!(received, MESSAGES);
    sending.join().unwrap();
    receiving.join().unwrap();
}

#[test]
fn a_parked_shard_wakes_for_its_timers() {
    let (done_tx, done_rx) = mpsc::channel();
    let shard = LocalExecutorBuilder::new(Placement::Unbound)
        .name("wake-timers")
        .spawn(move || async move {
            // Timers of different lengths, some of them concurrent, so a
            // sooner timer has to replace an armed later one.
            for round in 0..100u64 {
                let long = glommio::spawn_local(glommio::timer::sleep(Duration::from_millis(
                    2 + round % 3,
                )));
                glommio::timer::sleep(Duration::from_micros(100 + (round % 5) * 200)).await;
                long.await;
            }
            done_tx.send(()).unwrap();
        })
        .unwrap();
    done_rx
        .recv_timeout(DEADLINE)
        .expect("the shard missed a timer and stayed parked");
    shard.join().unwrap();
}

/// A shard doing depth-1 store writes parks between operations, and its
/// throughput timer (a completion count on the main ring) flags preemption
/// through the latency ring every ring-depth completions. A preemption flagged just
/// before the task queues ran once made the executor park with a task still
/// runnable, asleep until some unrelated event (none here): the store
/// benchmark stalled in about one run of four. A watchdog fails the test
/// when the shard makes no progress for a while.
#[test]
fn a_shard_doing_depth_one_store_writes_never_parks_with_a_runnable_task() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use sepia_osd::objstore::{CollId, Op, Transaction};

    const COLL: CollId = CollId { pool: 1, seed: 0 };
    const OBJECTS: u64 = 512;
    const RUN: Duration = Duration::from_secs(8);
    const STALL: Duration = Duration::from_secs(10);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("osd.0");
    DmaDevice::preallocate(&path, 64 << 20).unwrap();
    let progress = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = mpsc::channel();
    let shard_progress = progress.clone();
    // A shallow ring makes the throughput timer fire every few completions,
    // so a run meets the race many times over.
    let shard = LocalExecutorBuilder::new(Placement::Unbound)
        .name("depth-one-writes")
        .ring_depth(4)
        .spawn(move || async move {
            let store = fresh_store(&path).await;
            store
                .submit(Transaction {
                    ops: vec![Op::CreateCollection(COLL)],
                })
                .await
                .unwrap();
            let started = std::time::Instant::now();
            let mut op = 0u64;
            while started.elapsed() < RUN {
                // A cheap deterministic scatter over the objects.
                let obj = format!("obj.{}", op.wrapping_mul(0x9e37_79b9_7f4a_7c15) % OBJECTS);
                let data = vec![(op % 251) as u8; 4096];
                store
                    .submit(Transaction {
                        ops: vec![Op::Write {
                            coll: COLL,
                            obj,
                            offset: 0,
                            data,
                        }],
                    })
                    .await
                    .unwrap();
                op += 1;
                shard_progress.store(op, Ordering::Relaxed);
            }
            store.umount().await.unwrap();
            done_tx.send(op).unwrap();
        })
        .unwrap();
    let mut seen = 0;
    loop {
        match done_rx.recv_timeout(STALL) {
            Ok(ops) => {
                assert!(ops > 0);
                break;
            }
            // The shard ended without answering: its own panic says why.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                shard.join().unwrap();
                unreachable!("the shard ended without reporting its writes");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = progress.load(Ordering::Relaxed);
                assert!(
                    now > seen,
                    "the shard parked with a runnable task: stuck after {now} writes"
                );
                seen = now;
            }
        }
    }
    shard.join().unwrap();
}

/// With early submission on (the OSD's `--submit-batch`), a task that
/// leaves requests queued hands them to the kernel as it returns, in the
/// middle of a task queue run. Many concurrent writes and reads on a
/// shallow ring (so the ring also fills up) must all complete, each read
/// with the bytes its object was last given.
#[test]
fn a_shard_submitting_early_completes_every_request_with_its_data() {
    use std::rc::Rc;

    use sepia_osd::objstore::{CollId, Op, Transaction};

    const COLL: CollId = CollId { pool: 1, seed: 0 };
    const OBJECTS: u64 = 256;
    const TASKS: u64 = 48;

    for batch in [1usize, 4] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("osd.0");
        DmaDevice::preallocate(&path, 64 << 20).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let shard = LocalExecutorBuilder::new(Placement::Unbound)
            .name("early-submit")
            .ring_depth(8)
            .spawn(move || async move {
                glommio::executor().set_submit_batch_min(Some(batch));
                let store = Rc::new(fresh_store(&path).await);
                store
                    .submit(Transaction {
                        ops: vec![Op::CreateCollection(COLL)],
                    })
                    .await
                    .unwrap();
                let content = |obj: u64, round: u64| {
                    vec![(obj * 7 + round) as u8; 4096 * (1 + (obj % 3) as usize)]
                };
                for round in 0..3u64 {
                    // Each task owns the objects congruent to it, so every
                    // object's last write is known.
                    let writers: Vec<_> = (0..TASKS)
                        .map(|t| {
                            let store = store.clone();
                            glommio::spawn_local(async move {
                                for obj in (t..OBJECTS).step_by(TASKS as usize) {
                                    let op = Op::Write {
                                        coll: COLL,
                                        obj: format!("obj.{obj}"),
                                        offset: 0,
                                        data: content(obj, round),
                                    };
                                    store.submit(Transaction { ops: vec![op] }).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for w in writers {
                        w.await;
                    }
                    let readers: Vec<_> = (0..TASKS)
                        .map(|t| {
                            let store = store.clone();
                            glommio::spawn_local(async move {
                                for obj in (t..OBJECTS).step_by(TASKS as usize) {
                                    let got = store
                                        .read(&COLL, &format!("obj.{obj}"), 0, 0)
                                        .await
                                        .unwrap();
                                    assert!(
                                        got == content(obj, round),
                                        "obj.{obj} read back wrong data in round {round}"
                                    );
                                }
                            })
                        })
                        .collect();
                    for r in readers {
                        r.await;
                    }
                }
                // Reads after a remount come from the device, not a cache.
                let store = Rc::try_unwrap(store).ok().expect("all tasks ended");
                store.umount().await.unwrap();
                let dev = DmaDevice::open(&path).await.unwrap();
                let store = Store::mount(dev, 0, STORE_OWNER).await.unwrap();
                for obj in 0..OBJECTS {
                    let got = store
                        .read(&COLL, &format!("obj.{obj}"), 0, 0)
                        .await
                        .unwrap();
                    assert!(
                        got == content(obj, 2),
                        "obj.{obj} read back wrong data after remount"
                    );
                }
                store.umount().await.unwrap();
                done_tx.send(()).unwrap();
            })
            .unwrap();
        match done_rx.recv_timeout(DEADLINE) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                shard.join().unwrap();
                unreachable!("the shard ended without reporting");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("batch {batch}: a request submitted early never completed")
            }
        }
        shard.join().unwrap();
    }
}
