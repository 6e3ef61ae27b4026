//! More of the end-to-end path with real processes on loopback: hostile
//! bytes on an OSD port, many objects of random sizes on a size-3 pool,
//! `kill -9` of an OSD while writers run, and a pool size change.

mod common;
use common::{cluster_up as start, pool, runtime};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::rados::Rados;
use sepia_proto::msg::{SubOp, SubOpValue};

/// Stopped and deleted when dropped.
use sepia_client::cluster::Guard as Cluster;

/// True when the peer closed the connection within `within`.
fn closed_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn garbage_and_oversized_frames_close_only_that_connection() {
    let (_c, conf) = start("garbage", 1);
    let rt = runtime();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = pool(&rados, "p", 8, 1, 1).await;
        io.write_full("kept", b"still here").await.unwrap();
        let map = rados.osdmap();
        let addr = map.osd(0).unwrap().addrs[0].clone();
        // Random bytes.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut garbage = vec![0u8; 64 << 10];
        rng.fill(&mut garbage[..]);
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let _ = s.write_all(&garbage);
        assert!(closed_within(&mut s, Duration::from_secs(10)), "garbage: the OSD kept the connection");
        // A well-formed header that announces a 4 GiB body.
        let hello = sepia_proto::hello::local_hello("client.x", map.fsid);
        let f = sepia_proto::msg::encode(&sepia_proto::msg::Body::Hello(hello), 1, &[], None).unwrap();
        let mut header = f.header.to_vec();
        header[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(&header).unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(10)), "oversized body length: the OSD kept the connection");
        // A truncated frame followed by silence does not hurt anyone else.
        let mut idle = std::net::TcpStream::connect(&addr).unwrap();
        idle.write_all(&f.header[..10]).unwrap();
        // Others are served throughout.
        assert_eq!(io.read("kept", 0, 0).await.unwrap(), b"still here");
        io.write_full("after", b"garbage").await.unwrap();
        assert_eq!(io.read("after", 0, 0).await.unwrap(), b"garbage");
        drop(idle);
    });
}

/// A size-3 pool on one OSD has its PGs down; `osd pool set size 1` is a
/// new interval for every PG, which goes active on its one member (the
/// acting set reads the same before and after).
#[test]
fn lowering_a_pools_size_brings_its_down_pgs_up() {
    let (_c, conf) = start("poolsize", 1);
    let rt = runtime();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = pool(&rados, "p", 3, 2, 8).await;
        let set = |what: &str| format!("osd pool set p {what}").split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(rados.command(&set("size 1"), false).await.unwrap().result, 0);
        assert_eq!(rados.command(&set("min_size 1"), false).await.unwrap().result, 0);
        for i in 0..32 {
            let name = format!("o{i}");
            io.write_full(&name, name.as_bytes()).await.unwrap();
            assert_eq!(io.read(&name, 0, 0).await.unwrap(), name.as_bytes());
        }
    });
}

#[test]
fn ten_thousand_objects_of_random_sizes_on_a_size_3_pool() {
    let (_c, conf) = start("many", 3);
    let rt = runtime();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = pool(&rados, "r3", 3, 2, 32).await;
        const OBJECTS: usize = 10_000;
        let contents: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let (io, contents, next) = (io.clone(), contents.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= OBJECTS {
                        return;
                    }
                    let len = rng.gen_range(0..20_000usize);
                    let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                    let name = format!("o{i}");
                    io.write_full(&name, &data).await.unwrap();
                    // Every tenth object also gets an append, a truncate and a compound op.
                    let mut want = data;
                    if i % 10 == 0 {
                        io.append(&name, b"tail").await.unwrap();
                        want.extend_from_slice(b"tail");
                        let cut = want.len() / 2;
                        io.truncate(&name, cut as u64).await.unwrap();
                        want.truncate(cut);
                        let subops = vec![
                            SubOp::Write { offset: 1, data_offset: 0, len: 3 },
                            SubOp::SetXattr { name: "user.i".into(), value: i.to_le_bytes().to_vec() },
                            SubOp::OmapSetVals { entries: vec![("k".into(), name.clone().into_bytes())] },
                        ];
                        io.operate(&name, subops, b"abc".to_vec()).await.unwrap();
                        if want.len() < 4 {
                            want.resize(4, 0);
                        }
                        want[1..4].copy_from_slice(b"abc");
                    }
                    contents.lock().unwrap().insert(name, want);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let contents = Arc::try_unwrap(contents).unwrap().into_inner().unwrap();
        assert_eq!(contents.len(), OBJECTS);
        let names: Vec<String> = contents.keys().cloned().collect();
        let contents = Arc::new(contents);
        let mut tasks = Vec::new();
        for chunk in names.chunks(OBJECTS / 16) {
            let (io, chunk, contents) = (io.clone(), chunk.to_vec(), contents.clone());
            tasks.push(tokio::spawn(async move {
                for name in chunk {
                    assert_eq!(io.read(&name, 0, 0).await.unwrap(), contents[&name], "{name}");
                    let i: usize = name[1..].parse().unwrap();
                    if i % 10 == 0 {
                        let (outs, _) = io.operate(&name, vec![SubOp::GetXattr { name: "user.i".into() }, SubOp::OmapGetValsByKeys { keys: vec!["k".into()] }], Vec::new()).await.unwrap();
                        assert_eq!(outs[0].value, SubOpValue::Bytes(i.to_le_bytes().to_vec()));
                        assert_eq!(outs[1].value, SubOpValue::Vals { entries: vec![("k".into(), name.clone().into_bytes())], more: false });
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut listed = io.list().await.unwrap();
        listed.sort();
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(listed, expected, "ls shows exactly the objects written");
    });
}

#[test]
fn kill_9_while_writers_run_loses_no_acknowledged_write() {
    let (c, conf) = start("kill-writers", 3);
    let rt = runtime();
    let acked = rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = pool(&rados, "w", 3, 2, 16).await;
        let acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for t in 0..8u32 {
            let (io, acked, stop) = (io.clone(), acked.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut n = 0u32;
                let mut failures = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Overwrite a small set of objects, so later writes
                    // must win over earlier ones on every copy.
                    let name = format!("w{t}-{}", n % 20);
                    let value = format!("writer {t} write {n}").into_bytes();
                    match io.write_full(&name, &value).await {
                        Ok(()) => {
                            acked.lock().unwrap().insert(name, value);
                        }
                        // Unacknowledged: the object may hold either value.
                        Err(_) => {
                            failures += 1;
                            acked.lock().unwrap().remove(&name);
                        }
                    }
                    n += 1;
                }
                (n, failures)
            }));
        }
        // Kill only once writes are being acknowledged: on a loaded CI
        // machine peering a fresh pool can take longer than a fixed sleep.
        let started = Instant::now();
        while acked.lock().unwrap().len() < 16 {
            assert!(started.elapsed() < Duration::from_secs(60), "no writes acknowledged before the kill");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(cluster::signal(&c.dir, "osd.2", 9));
        let killed = Instant::now();
        while rados.osdmap().is_up(2) {
            assert!(killed.elapsed() < Duration::from_secs(60), "osd.2 never marked down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let acked_at_down = acked.lock().unwrap().len();
        // Writes continue on the two copies left.
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = 0;
        for w in writers {
            let (n, _failures) = w.await.unwrap();
            total += n;
        }
        assert!(total > 0 && acked_at_down > 0, "writes attempted {total}, acknowledged when osd.2 went down {acked_at_down}");
        let acked = acked.lock().unwrap().clone();
        for (name, value) in &acked {
            assert_eq!(&io.read(name, 0, 0).await.unwrap(), value, "{name} before osd.2 returns");
        }
        acked
    });
    // osd.2 returns and catches up; every acknowledged write still reads back.
    cluster::start_osd(&c.dir, 2).unwrap();
    cluster::wait_for_osds_up(&c.dir, 3, Duration::from_secs(30)).unwrap();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = rados.ioctx("w").unwrap();
        let start = Instant::now();
        loop {
            let summaries: Vec<String> = (0..3).map(|o| cluster::pg_summary(&c.dir, o)).collect();
            let settled = summaries.iter().all(|s| cluster::pgs_settled(s));
            if settled {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "PGs never became clean: {summaries:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (name, value) in &acked {
            assert_eq!(&io.read(name, 0, 0).await.unwrap(), value, "{name} after osd.2 returned");
        }
    });
}

/// A clean PG trims its log short, but a write resent long after it left
/// the log, even across a `kill -9` and restart of the OSD, is answered
/// from the durable dup records instead of being applied again.
#[test]
fn a_late_resend_of_a_trimmed_write_is_applied_once_across_a_restart() {
    let (c, conf) = start("dups", 1);
    let rt = runtime();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        // One PG: every write below lands in the same log.
        let io = pool(&rados, "dups", 1, 1, 1).await;
        let pool_id = rados.osdmap().pool_by_name("dups").unwrap().id;
        let append = vec![SubOp::Append { data_offset: 0, len: 1 }];
        let obj = sepia_proto::msg::ObjectId::new("counter");
        let tid = 7_000_000;
        let (first, _) = rados.operate_with_tid(pool_id, obj.clone(), append.clone(), b"x".to_vec(), tid).await.unwrap();
        assert_eq!(first.result, 0);
        // More writes than even a degraded log keeps (3000 entries; a clean
        // one keeps 250..500), fewer than the 3000 dup ids remembered.
        for i in 0..3100 {
            io.write_full(&format!("filler{}", i % 50), format!("{i}").as_bytes()).await.unwrap();
        }
        let (again, _) = rados.operate_with_tid(pool_id, obj.clone(), append.clone(), b"x".to_vec(), tid).await.unwrap();
        assert_eq!((again.result, again.version), (0, first.version), "answered from the dup records");
        assert_eq!(io.read("counter", 0, 0).await.unwrap(), b"x");

        // kill -9 and restart: the dup records are durable.
        assert!(cluster::signal(&c.dir, "osd.0", libc::SIGKILL));
        std::thread::sleep(Duration::from_millis(300));
        cluster::start_osd(&c.dir, 0).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rados.operate_with_tid(pool_id, obj.clone(), append.clone(), b"x".to_vec(), tid).await {
                Ok((r, _)) if r.result == 0 => {
                    assert_eq!(r.version, first.version, "after the restart the resend still gets the first write's version");
                    break;
                }
                other => {
                    assert!(Instant::now() < deadline, "the restarted OSD never answered: {other:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        assert_eq!(io.read("counter", 0, 0).await.unwrap(), b"x", "applied exactly once");
        // A new request id is a new write.
        let (fresh, _) = rados.operate_with_tid(pool_id, obj, append, b"y".to_vec(), tid + 1).await.unwrap();
        assert_eq!(fresh.result, 0);
        assert_eq!(io.read("counter", 0, 0).await.unwrap(), b"xy");
    });
    drop(c);
}

/// A resent write whose reply was lost gets the first outcome even when
/// its checks would now fail because of its own effect: a second remove
/// finds nothing, a second exclusive create finds the object, a guard the
/// write itself changed no longer holds. (The soak that found this:
/// removes resent across a `kill -9` of their primary answered ENOENT.)
#[test]
fn a_resent_write_is_answered_before_its_checks_see_its_own_effect() {
    use sepia_proto::msg::{CmpOp, ObjectId};
    let (c, conf) = start("dupchecks", 1);
    let rt = runtime();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = pool(&rados, "dupchecks", 1, 1, 4).await;
        let pool_id = rados.osdmap().pool_by_name("dupchecks").unwrap().id;
        let twice = |name: &str, subops: Vec<SubOp>, tid: u64| {
            let (rados, obj) = (rados.clone(), ObjectId::new(name));
            async move {
                let (first, _) = rados.operate_with_tid(pool_id, obj.clone(), subops.clone(), Vec::new(), tid).await.unwrap();
                let (again, _) = rados.operate_with_tid(pool_id, obj, subops, Vec::new(), tid).await.unwrap();
                (first, again)
            }
        };
        io.write_full("gone", b"x").await.unwrap();
        let (first, again) = twice("gone", vec![SubOp::Remove], 9_000_001).await;
        assert_eq!((first.result, again.result), (0, 0), "the resent remove succeeded, as the first did");
        assert_eq!(again.version, first.version);
        assert!(io.read("gone", 0, 0).await.is_err());

        let (first, again) = twice("fresh", vec![SubOp::Create { exclusive: true }], 9_000_002).await;
        assert_eq!((first.result, again.result), (0, 0), "the resent exclusive create succeeded, as the first did");
        assert_eq!(again.version, first.version);

        io.write_full("guarded", b"v").await.unwrap();
        io.operate("guarded", vec![SubOp::SetXattr { name: "user.state".into(), value: b"a".to_vec() }], Vec::new()).await.unwrap();
        let flip = vec![SubOp::CmpXattr { name: "user.state".into(), op: CmpOp::Eq, value: b"a".to_vec() }, SubOp::SetXattr { name: "user.state".into(), value: b"b".to_vec() }];
        let (first, again) = twice("guarded", flip, 9_000_003).await;
        assert_eq!((first.result, again.result), (0, 0), "the resent guarded write succeeded, as the first did");
        assert_eq!(again.version, first.version);

        // A new request id is a new op: its checks run.
        let (fresh, _) = rados.operate_with_tid(pool_id, ObjectId::new("gone"), vec![SubOp::Remove], Vec::new(), 9_000_004).await.unwrap();
        assert_eq!(fresh.result, sepia_proto::errno::Errno::NoEnt.result());
        let (fresh, _) = rados.operate_with_tid(pool_id, ObjectId::new("fresh"), vec![SubOp::Create { exclusive: true }], Vec::new(), 9_000_005).await.unwrap();
        assert_eq!(fresh.result, sepia_proto::errno::Errno::Exist.result());
    });
    drop(c);
}

/// An OSD whose store fails (its block device starts refusing writes)
/// stops instead of serving with PG state ahead of its disk, and after a
/// restart on the repaired device every acknowledged object is there.
#[test]
fn an_osd_whose_device_fails_stops_and_recovers_on_restart() {
    let dir = std::env::temp_dir().join(format!("sepia-e2e-failstop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let backing = dir.join("backing");
    std::fs::File::create(&backing).unwrap().set_len(512 << 20).unwrap();
    let out = std::process::Command::new("losetup").args(["--find", "--show", "--direct-io=on"]).arg(&backing).output();
    let Some(dev) = out.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()) else {
        assert!(std::env::var_os("SEPIA_REQUIRE_LOOP").is_none(), "SEPIA_REQUIRE_LOOP is set but no loop device could be attached");
        eprintln!("skipped: no loop device on this machine");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = std::process::Command::new("blockdev").args(["--setrw", &self.0]).status();
            let _ = std::process::Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(dev.clone());
    std::env::set_var("CARGO_BIN_EXE_sepia-osd", env!("CARGO_BIN_EXE_sepia-osd"));
    let cdir = dir.join("cluster");
    cluster::up(&UpOptions { dir: cdir.clone(), mons: 1, osds: 0, down_out_interval_s: 600 }).expect("cluster up");
    let c = Cluster { dir: cdir.clone() };
    // The launcher's data path for osd.0 is the loop device.
    std::fs::create_dir_all(cdir.join("data")).unwrap();
    std::os::unix::fs::symlink(&dev, cdir.join("data").join("osd.0")).unwrap();
    let pid = cluster::start_osd(&cdir, 0).unwrap();
    cluster::wait_for_osds_up(&cdir, 1, Duration::from_secs(30)).unwrap();
    let conf = Config::load(&cdir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = pool(&rados, "fs", 1, 1, 8).await;
        for i in 0..20 {
            io.write_full(&format!("before{i}"), format!("v{i}").as_bytes()).await.unwrap();
        }
        assert!(std::process::Command::new("blockdev").args(["--setro", &dev]).status().unwrap().success());
        // This write makes the store fail; its answer does not matter.
        let io2 = rados.ioctx("fs").unwrap();
        let pending = tokio::spawn(async move { io2.write_full("during", b"x").await });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut status = 0;
            // The OSD is our child (the launcher spawned it from this process).
            if unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) } == pid as i32 {
                break;
            }
            assert!(Instant::now() < deadline, "the OSD kept running with a failed store");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(cdir.join("out").join("osd.0.log")).unwrap();
        assert!(log.contains("the store failed"), "{log}");
        // Repair the device and restart: journal replay, nothing acknowledged lost.
        assert!(std::process::Command::new("blockdev").args(["--setrw", &dev]).status().unwrap().success());
        cluster::start_osd(&cdir, 0).unwrap();
        for i in 0..20 {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match io.read(&format!("before{i}"), 0, 0).await {
                    Ok(v) => {
                        assert_eq!(v, format!("v{i}").as_bytes());
                        break;
                    }
                    Err(e) => {
                        assert!(Instant::now() < deadline, "before{i} after the restart: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        // The write in flight at the failure is either whole or absent.
        if let Ok(v) = io.read("during", 0, 0).await {
            assert_eq!(v, b"x");
        }
        pending.abort();
    });
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}
