//! Backfill with real processes on loopback: an OSD that was down while
//! the PG logs moved past it is filled by walking the PGs' objects, and
//! then holds every acknowledged object alone; the same when a pool's
//! size is raised and its new members start with nothing.

mod common;
use common::{cluster_up, pool, runtime};

use std::collections::BTreeMap;

use std::time::{Duration, Instant};

use sepia_client::cluster;
use sepia_client::rados::{IoCtx, Rados, RadosError};
use sepia_proto::errno::Errno;
use sepia_proto::msg::{SubOp, SubOpValue};

/// What an object should hold: data, one xattr and omap entries.
#[derive(Clone, Debug, PartialEq)]
struct Expected {
    data: Vec<u8>,
    xattr: Option<Vec<u8>>,
    omap: Vec<(String, Vec<u8>)>,
}

/// Retries while the cluster settles (EAGAIN, timeouts after a map change).
async fn retry<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RadosError>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(Instant::now() < deadline, "{what}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn write_object(io: &IoCtx, name: &str, e: &Expected) -> Result<(), RadosError> {
    let mut subops = vec![SubOp::WriteFull { data_offset: 0, len: e.data.len() as u32 }];
    if let Some(x) = &e.xattr {
        subops.push(SubOp::SetXattr { name: "user.tag".into(), value: x.clone() });
    }
    if !e.omap.is_empty() {
        subops.push(SubOp::OmapSetVals { entries: e.omap.clone() });
    }
    io.operate(name, subops, e.data.clone()).await.map(|_| ())
}

async fn read_object(io: &IoCtx, name: &str) -> Result<Expected, RadosError> {
    let data = io.read(name, 0, 0).await?;
    let (outs, _) = io.operate(name, vec![SubOp::GetXattrs, SubOp::OmapGetVals { after: String::new(), max: 100 }], Vec::new()).await?;
    let xattr = match &outs[0].value {
        SubOpValue::Xattrs(x) => {
            assert!(x.iter().all(|(k, _)| !k.starts_with('\0')), "{name}: a client sees the OSD's own attrs: {x:?}");
            x.iter().find(|(k, _)| k == "user.tag").map(|(_, v)| v.clone())
        }
        other => panic!("{name}: xattrs answered {other:?}"),
    };
    let omap = match &outs[1].value {
        SubOpValue::Vals { entries, .. } => entries.clone(),
        other => panic!("{name}: omap answered {other:?}"),
    };
    Ok(Expected { data, xattr, omap })
}

/// Starts osd.2 again and waits until every PG of the three OSDs is
/// settled and none is backfilling.
fn restart_osd2_until_clean(dir: &std::path::Path) {
    cluster::start_osd(dir, 2).unwrap();
    cluster::wait_for_osds_up(dir, 3, Duration::from_secs(30)).unwrap();
    let start = Instant::now();
    loop {
        let summaries: Vec<String> = (0..3).map(|o| cluster::pg_summary(dir, o)).collect();
        if summaries.iter().all(|s| cluster::pgs_settled(s) && !s.contains("backfill")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "PGs never became clean: {summaries:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kills osd.0 and osd.1 and waits until the map marks both down.
async fn leave_osd2_alone(dir: &std::path::Path, rados: &Rados) {
    for o in [0, 1] {
        assert!(cluster::signal(dir, &format!("osd.{o}"), libc::SIGKILL));
    }
    let since = Instant::now();
    while rados.osdmap().is_up(0) || rados.osdmap().is_up(1) {
        assert!(since.elapsed() < Duration::from_secs(60), "osd.0/osd.1 never marked down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// osd.2 is down while distinct objects are written, overwritten and
/// removed (far more per PG than the shortened PG logs keep), comes back
/// and is backfilled; then the two others are killed and every
/// acknowledged object reads back from osd.2 alone, removed ones gone.
#[test]
fn a_returning_osd_behind_the_log_is_backfilled_and_serves_alone() {
    // Degraded PG logs keep 16 entries (clean ones 4): the outage below
    // writes ~80 per PG.
    std::env::set_var("SEPIA_OSD_PG_LOG_MAX", "16");
    let (c, conf) = cluster_up("backfill", 3);
    let rt = runtime();

    let expected = rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = pool(&rados, "bf", 3, 1, 8).await;
        let mut expected: BTreeMap<String, Option<Expected>> = BTreeMap::new();
        // Before the outage: objects osd.2 will hold stale copies of.
        for i in 0..60 {
            let e = Expected { data: format!("before {i}").into_bytes(), xattr: Some(vec![i as u8]), omap: vec![(format!("k{i}"), b"v0".to_vec())] };
            let name = format!("obj{i}");
            retry("write before", || write_object(&io, &name, &e)).await;
            expected.insert(format!("obj{i}"), Some(e));
        }
        assert!(cluster::signal(&c.dir, "osd.2", libc::SIGKILL));
        let killed = Instant::now();
        while rados.osdmap().is_up(2) {
            assert!(killed.elapsed() < Duration::from_secs(60), "osd.2 never marked down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // While it is down: new objects, overwrites (bigger, other xattrs
        // and omap), removals, and overwrites again.
        for round in 0..3 {
            for i in 0..200 {
                let name = format!("obj{i}");
                let e = if (i + round) % 7 == 0 {
                    None
                } else {
                    let data = format!("round {round} object {i} ").repeat(1 + (i % 40)).into_bytes();
                    let xattr = (i % 3 != 0).then(|| format!("x{round}").into_bytes());
                    let omap = (0..(i % 4)).map(|k| (format!("k{k}"), format!("{round}.{i}").into_bytes())).collect();
                    Some(Expected { data, xattr, omap })
                };
                match &e {
                    Some(e) => {
                        // A write_full leaves old omap keys and xattrs:
                        // start from nothing so the expectation is exact.
                        let _ = retry("remove before rewrite", || async {
                            match io.remove(&name).await {
                                Err(RadosError::Errno(Errno::NoEnt)) => Ok(()),
                                other => other,
                            }
                        })
                        .await;
                        retry("write during the outage", || write_object(&io, &name, e)).await;
                    }
                    None => {
                        retry("remove during the outage", || async {
                            match io.remove(&name).await {
                                Err(RadosError::Errno(Errno::NoEnt)) => Ok(()),
                                other => other,
                            }
                        })
                        .await;
                    }
                }
                expected.insert(name, e);
            }
        }
        expected
    });

    // osd.2 returns far behind every log tail and is backfilled.
    restart_osd2_until_clean(&c.dir);
    let log2 = std::fs::read_to_string(c.dir.join("out").join("osd.2.log")).unwrap();
    assert!(log2.contains("backfill started"), "osd.2 was not backfilled (the logs still reached it?)");
    let started = log2.matches("backfill started").count();
    let done = log2.matches("backfilled: this copy is complete").count();
    assert!(done >= started, "every backfill of osd.2 finished ({done} of {started})");
    eprintln!("osd.2: {started} PG copies backfilled");

    // Only osd.2 is left: everything acknowledged is there, exactly.
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = rados.ioctx("bf").unwrap();
        leave_osd2_alone(&c.dir, &rados).await;
        let mut removed = 0;
        for (name, e) in &expected {
            match e {
                Some(e) => {
                    let got = retry("read from osd.2 alone", || read_object(&io, name)).await;
                    assert_eq!(&got, e, "{name} on the backfilled osd.2");
                }
                None => {
                    let r = retry("stat a removed object", || async {
                        match io.stat(name).await {
                            Err(RadosError::Errno(Errno::NoEnt)) => Ok(false),
                            Ok(_) => Ok(true),
                            Err(e) => Err(e),
                        }
                    })
                    .await;
                    assert!(!r, "{name} was removed but osd.2 still has it");
                    removed += 1;
                }
            }
        }
        assert!(removed > 0);
        let mut listed = retry("list from osd.2 alone", || io.list()).await;
        listed.sort();
        let mut want: Vec<String> = expected.iter().filter(|(_, e)| e.is_some()).map(|(n, _)| n.clone()).collect();
        want.sort();
        assert_eq!(listed, want, "osd.2 lists exactly the acknowledged objects");
    });

    // The copies agree on every object's version record, and backfill
    // carried them: each object on osd.2 has the attr the others have.
    stop_osd(&c.dir, 2, libc::SIGKILL);
    let pool_id = rt.block_on(async { Rados::connect_conf(&conf, "client.admin").await.unwrap().osdmap().pool_by_name("bf").unwrap().id });
    let copies: Vec<_> = (0..3).map(|o| object_versions(&cluster::osd_paths(&c.dir, o).unwrap().data, o, pool_id)).collect();
    assert_eq!(copies[2].len(), expected.values().filter(|e| e.is_some()).count());
    for (name, version) in &copies[2] {
        assert!(version.as_ref().is_some_and(|v| v.len() == 12 && v.iter().any(|b| *b != 0)), "{name} on osd.2 has no version record");
    }
    assert_eq!(copies[0], copies[2], "osd.0 and osd.2 disagree on version records");
    assert_eq!(copies[1], copies[2], "osd.1 and osd.2 disagree on version records");
}

/// Signals an OSD and waits until its process is gone (a zombie of ours
/// counts as gone), so its store can be opened.
fn stop_osd(dir: &std::path::Path, osd: i32, signal: i32) {
    let pid = std::fs::read_to_string(dir.join("run").join(format!("osd.{osd}.pid"))).unwrap().trim().to_string();
    assert!(cluster::signal(dir, &format!("osd.{osd}"), signal));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit(')').next().is_some_and(|t| !t.trim_start().starts_with('Z'))) {
        assert!(Instant::now() < deadline, "osd.{osd} did not exit after signal {signal}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every object of `pool` in a stopped OSD's store, with its version
/// record attr (`None`: the object has none).
fn object_versions(data: &std::path::Path, osd: i32, pool: i64) -> BTreeMap<String, Option<Vec<u8>>> {
    use sepia_osd::objstore::{device::DmaDevice, Expect, Store};
    let data = data.to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let store = Store::mount(DmaDevice::open(&data).await.unwrap(), 0, Expect { fsid: None, osd, shards: 1 }).await.unwrap();
            let mut versions = BTreeMap::new();
            for coll in store.collections().into_iter().filter(|c| c.pool == pool) {
                let mut after = String::new();
                loop {
                    let (names, more) = store.list(&coll, &after, 256).unwrap();
                    for name in names.iter().filter(|n| !n.starts_with('\0')) {
                        versions.insert(name.clone(), store.getattr(&coll, name, sepia_osd::pgs::VERSION_ATTR).ok());
                    }
                    match names.last() {
                        Some(last) if more => after = last.clone(),
                        _ => break,
                    }
                }
            }
            store.umount().await.unwrap();
            versions
        })
        .expect("glommio executor (io_uring)")
        .join()
        .expect("executor thread")
}

/// Damages, offline, one log record of every PG copy an OSD's store holds
/// for `pool` (the newest but one, so the log would only have a gap, not
/// a shorter end). Returns how many PG copies it damaged.
fn damage_pg_logs(data: &std::path::Path, osd: i32, pool: i64) -> usize {
    use sepia_osd::objstore::{device::DmaDevice, Expect, Op, Store, Transaction};
    let data = data.to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let store = Store::mount(DmaDevice::open(&data).await.unwrap(), 0, Expect { fsid: None, osd, shards: 1 }).await.unwrap();
            let mut damaged = 0;
            for coll in store.collections().into_iter().filter(|c| c.pool == pool) {
                let Ok((_, omap)) = store.omap_get(&coll, sepia_osd::pgs::PGMETA) else { continue };
                let logs: Vec<&String> = omap.keys().filter(|k| k.starts_with("log.")).collect();
                let Some(key) = logs.len().checked_sub(2).map(|i| logs[i].clone()) else { continue };
                let entries = BTreeMap::from([(key, b"not a log record".to_vec())]);
                store.submit(Transaction { ops: vec![Op::OmapSetKeys { coll, obj: sepia_osd::pgs::PGMETA.into(), entries }] }).await.unwrap();
                damaged += 1;
            }
            store.umount().await.unwrap();
            damaged
        })
        .expect("glommio executor (io_uring)")
        .join()
        .expect("executor thread")
}

/// An OSD whose PG records do not read in full after a restart (a log
/// record damaged while it was down) does not trust the rest: each such
/// copy loads as incomplete and is backfilled, and afterwards the OSD
/// serves every acknowledged write alone.
#[test]
fn a_pg_copy_with_damaged_records_is_backfilled_not_trusted() {
    let (c, conf) = cluster_up("damaged", 3);
    let rt = runtime();
    let value = |i: usize, round: usize| format!("round {round} of object {i}").into_bytes();

    let pool_id = rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = pool(&rados, "dm", 3, 1, 4).await;
        // Three writes per object: each PG copy's log holds several entries.
        for round in 0..3 {
            for i in 0..24 {
                let (name, data) = (format!("obj{i}"), value(i, round));
                retry("write", || io.write_full(&name, &data)).await;
            }
        }
        // Its store is opened below: the process must be gone.
        stop_osd(&c.dir, 2, libc::SIGTERM);
        let stopped = Instant::now();
        while rados.osdmap().is_up(2) {
            assert!(stopped.elapsed() < Duration::from_secs(60), "osd.2 never marked down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rados.osdmap().pool_by_name("dm").unwrap().id
    });
    let data = cluster::osd_paths(&c.dir, 2).unwrap().data;
    let damaged = damage_pg_logs(&data, 2, pool_id);
    assert!(damaged > 0, "no PG copy of the pool on osd.2 to damage");

    restart_osd2_until_clean(&c.dir);
    let log2 = std::fs::read_to_string(c.dir.join("out").join("osd.2.log")).unwrap();
    let unreadable = log2.matches("PG records unreadable").count();
    assert_eq!(unreadable, damaged, "each damaged PG copy loads as incomplete:\n{log2}");
    let done = log2.matches("backfilled: this copy is complete").count();
    assert!(done >= damaged, "each damaged PG copy is backfilled ({done} of {damaged})");

    // Only osd.2 is left: every object reads back as last written.
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = rados.ioctx("dm").unwrap();
        leave_osd2_alone(&c.dir, &rados).await;
        for i in 0..24 {
            let name = format!("obj{i}");
            let got = retry("read from osd.2 alone", || io.read(&name, 0, 0)).await;
            assert_eq!(got, value(i, 2), "{name} on osd.2 after its damaged PG copies were backfilled");
        }
    });
}

/// PGs an OSD's newest summary line counts, whatever their states
/// (`pgs: active+clean=5 active+undersized=3` holds 8).
fn pgs_held(summary: &str) -> u32 {
    summary.split_whitespace().filter_map(|w| w.rsplit_once('=')).filter_map(|(_, n)| n.parse::<u32>().ok()).sum()
}

/// `osd pool set size 3` on a size-1 pool: every PG gains two members,
/// which are backfilled (they never saw the objects, and the logs are
/// kept short); then osd.2 alone serves every object, including those of
/// the PGs whose only copy was on osd.0 or osd.1.
#[test]
fn raising_a_pools_size_backfills_its_new_members() {
    std::env::set_var("SEPIA_OSD_PG_LOG_MAX", "16");
    let (c, conf) = cluster_up("grow", 3);
    let rt = runtime();
    let expected: Vec<(String, Expected)> = rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = pool(&rados, "g", 1, 1, 8).await;
        let mut expected = Vec::new();
        for i in 0..120 {
            let e = Expected { data: format!("object {i} ").repeat(1 + i % 50).into_bytes(), xattr: Some(vec![i as u8]), omap: vec![(format!("k{i}"), b"v".to_vec())] };
            let name = format!("obj{i}");
            retry("write at size 1", || write_object(&io, &name, &e)).await;
            expected.push((name, e));
        }
        let set: Vec<String> = "osd pool set g size 3".split(' ').map(String::from).collect();
        assert_eq!(rados.command(&set, false).await.unwrap().result, 0);
        expected
    });
    // Every OSD holds all 8 PGs, settled and done backfilling.
    let start = Instant::now();
    loop {
        let summaries: Vec<String> = (0..3).map(|o| cluster::pg_summary(&c.dir, o)).collect();
        if summaries.iter().all(|s| cluster::pgs_settled(s) && !s.contains("backfill") && pgs_held(s) == 8) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the new members never became clean: {summaries:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log2 = std::fs::read_to_string(c.dir.join("out").join("osd.2.log")).unwrap();
    let started = log2.matches("backfill started").count();
    let done = log2.matches("backfilled: this copy is complete").count();
    assert!(started > 0 && done >= started, "osd.2's new PG copies were backfilled ({done} of {started})");
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = rados.ioctx("g").unwrap();
        leave_osd2_alone(&c.dir, &rados).await;
        for (name, e) in &expected {
            let got = retry("read from osd.2 alone", || read_object(&io, name)).await;
            assert_eq!(&got, e, "{name} on osd.2 after the pool grew");
        }
    });
}
