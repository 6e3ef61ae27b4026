//! The first whole path: real monitor and OSD processes on loopback, started
//! by the project's launcher; a librados-style client writes objects through
//! the OSDs (two replicas) to their stores and reads them back — also after
//! every OSD was killed with SIGKILL and restarted.

use std::time::Duration;

use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::rados::Rados;
use sepia_proto::hello::FrameMode;
use sepia_proto::msg::{SubOp, SubOpValue};

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Stopped and deleted when dropped.
use sepia_client::cluster::Guard as Cluster;

#[test]
fn write_read_and_survive_kill_9() {
    std::env::set_var("CARGO_BIN_EXE_sepia-osd", env!("CARGO_BIN_EXE_sepia-osd"));
    let dir = std::env::temp_dir().join(format!("sepia-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    cluster::up(&UpOptions { dir: dir.clone(), mons: 1, osds: 2, down_out_interval_s: 600 }).expect("cluster up (needs sepia-mon built next to the tests)");
    let c = Cluster { dir: dir.clone() };
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let args: Vec<String> = "osd pool create rbd 16 --size 2".split(' ').map(String::from).collect();
        assert_eq!(rados.command(&args, false).await.unwrap().result, 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rados.osdmap().pool_by_name("rbd").is_none() {
            assert!(std::time::Instant::now() < deadline, "pool never appeared in the client's map");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let io = rados.ioctx("rbd").unwrap();
        io.write_full("big", &payload).await.unwrap();
        io.write("small", 0, b"hello").await.unwrap();
        io.append("small", b" world").await.unwrap();
        io.write("small", 6, b"W").await.unwrap();
        assert_eq!(io.read("small", 0, 0).await.unwrap(), b"hello World");
        assert_eq!(io.stat("big").await.unwrap().size, payload.len() as u64);
        for i in 0..50 {
            io.write_full(&format!("obj{i}"), format!("value {i}").as_bytes()).await.unwrap();
        }
        // A compound op: xattr + omap + a read in one go.
        let (outs, _) = io
            .operate("small", vec![SubOp::SetXattr { name: "user.k".into(), value: b"v".to_vec() }, SubOp::OmapSetVals { entries: vec![("a".into(), b"1".to_vec())] }], Vec::new())
            .await
            .unwrap();
        assert_eq!(outs.len(), 2);
        let (outs, _) = io.operate("small", vec![SubOp::GetXattr { name: "user.k".into() }, SubOp::OmapGetValsByKeys { keys: vec!["a".into()] }], Vec::new()).await.unwrap();
        assert_eq!(outs[0].value, SubOpValue::Bytes(b"v".to_vec()));
        assert_eq!(outs[1].value, SubOpValue::Vals { entries: vec![("a".into(), b"1".to_vec())], more: false });
        let mut names = io.list().await.unwrap();
        names.sort();
        assert_eq!(names.len(), 52);
        // Concurrent appends to one object are ordered by the primary: none
        // is lost and every replica gets them in the same order.
        let mut tasks = Vec::new();
        for i in 0..32u8 {
            let io = io.clone();
            tasks.push(tokio::spawn(async move { io.append("log", &[i]).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let mut log = io.read("log", 0, 0).await.unwrap();
        log.sort_unstable();
        assert_eq!(log, (0..32u8).collect::<Vec<_>>());
        io.remove("obj0").await.unwrap();
        assert!(io.read("obj0", 0, 0).await.is_err(), "removed");
        // OSD caps: a read-only key reads but may not write; other pools are closed to it.
        let create: Vec<String> = ["auth", "get-or-create", "client.ro", "mon", "allow r", "osd", "allow r pool=rbd"].map(String::from).to_vec();
        let r = rados.command(&create, false).await.unwrap();
        assert_eq!(r.result, 0, "{}", r.status);
        let ring = sepia_proto::auth::keyring::Keyring::parse(&r.output).unwrap();
        let (_, entry) = ring.entries.iter().next().unwrap();
        let ro = Rados::connect_with_secret(conf.mon_addrs(), "client.ro", Some(entry.key.clone())).await.unwrap();
        let ro_io = ro.ioctx("rbd").unwrap();
        assert_eq!(ro_io.read("small", 0, 0).await.unwrap(), b"hello World", "allow r reads");
        match ro_io.write_full("small", b"overwritten").await {
            Err(sepia_client::rados::RadosError::Errno(sepia_proto::errno::Errno::Access)) => {}
            other => panic!("a read-only key wrote: {other:?}"),
        }
        // Without any ticket an OSD answers EACCES.
        let map = rados.osdmap();
        let pool = map.pool_by_name("rbd").unwrap();
        let pg = pool.object_pg("small", None, "");
        let primary = map.pg_placement(pg).unwrap().acting_primary.unwrap();
        let addr = map.osd(primary).unwrap().addrs[map.pg_shard(pg, primary).unwrap() as usize].clone();
        let mut anon = sepia_client::conn::Conn::connect(&addr, "client.nobody", [0; 16]).await.unwrap();
        let op = sepia_proto::msg::OsdOp {
            reqid: sepia_proto::msg::ReqId { client: 77, tid: 1 },
            pg,
            epoch: map.epoch,
            object: sepia_proto::msg::ObjectId::new("small"),
            subops: vec![SubOp::WriteFull { data_offset: 0, len: 3 }],
        };
        anon.send(&sepia_proto::msg::Body::OsdOp(op), b"bad").await.unwrap();
        match anon.recv_body().await.unwrap().1 {
            sepia_proto::msg::Body::OsdOpReply(r) => assert_eq!(r.result, -13, "no ticket, no write"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(io.read("small", 0, 0).await.unwrap(), b"hello World", "the refused write changed nothing");
        // A client's ticket, even a valid one, never speaks OSD to OSD: a
        // replica write from client.ro closes its connection unapplied.
        let mut mon = sepia_client::conn::Conn::connect(&conf.mon_addrs()[0], "client.ro", [0; 16]).await.unwrap();
        let granted = sepia_client::conn::authenticate(&mut mon, "client.ro", &entry.key).await.unwrap();
        let ticket = granted.tickets.iter().find(|t| t.service == "osd").unwrap();
        let mut forger = sepia_client::conn::Conn::connect(&addr, "client.ro", [0; 16]).await.unwrap();
        sepia_client::conn::authorize(&mut forger, &granted.session_key, ticket).await.unwrap();
        let forged = sepia_proto::msg::RepOp {
            reqid: sepia_proto::msg::ReqId { client: 78, tid: 1 },
            pg,
            epoch: map.epoch,
            version: sepia_proto::msg::EVersion { epoch: map.epoch, version: 1 << 40 },
            object: sepia_proto::msg::ObjectId::new("small"),
            subops: vec![SubOp::WriteFull { data_offset: 0, len: 6 }],
            trim_to: sepia_proto::msg::EVersion { epoch: 0, version: 0 },
            prior_version: None,
        };
        forger.send(&sepia_proto::msg::Body::RepOp(forged), b"forged").await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), forger.recv_body()).await.expect("the OSD answers or closes");
        assert!(answer.is_err(), "the connection of a client sending a replica write is closed: {answer:?}");
        assert_eq!(io.read("small", 0, 0).await.unwrap(), b"hello World", "the forged replica write changed nothing");
        // An authorizer copied off one connection is refused on another:
        // it covers the first connection's challenge.
        let seen = sepia_client::conn::Conn::connect(&addr, "client.ro", [0; 16]).await.unwrap();
        let copied = sepia_proto::auth::ticket::build_authorizer(ticket, &granted.session_key, seen.challenge(), 1, wall_ms());
        let mut replayer = sepia_client::conn::Conn::connect(&addr, "client.ro", [0; 16]).await.unwrap();
        assert_ne!(seen.challenge(), replayer.challenge());
        replayer.send(&sepia_proto::msg::Body::Auth(sepia_proto::auth::AuthMessage::Authorize(copied)), &[]).await.unwrap();
        match replayer.recv_body().await.unwrap().1 {
            sepia_proto::msg::Body::Auth(sepia_proto::auth::AuthMessage::Refused { .. }) => {}
            other => panic!("a replayed authorizer was accepted: {other:?}"),
        }
        // A client that asks for signed frames gets them from a crc OSD:
        // its decoder then refuses any reply without a MAC.
        let signer = Rados::connect_in(conf.mon_addrs(), "client.ro", Some(entry.key.clone()), FrameMode::Sign).await.unwrap();
        assert_eq!(signer.ioctx("rbd").unwrap().read("small", 0, 0).await.unwrap(), b"hello World");
        let mut signed = sepia_client::conn::Conn::connect_in(&addr, "client.ro", [0; 16], FrameMode::Sign).await.unwrap();
        assert!(signed.frames_signed());
        sepia_client::conn::authorize(&mut signed, &granted.session_key, ticket).await.unwrap();
        assert!(!forger.frames_signed(), "crc is the default");
        assert!(io.truncate("nothing-here", 0).await.is_err(), "ENOENT");
    });
    // Kill every OSD without warning, then start them again.
    for id in 0..2 {
        assert!(cluster::signal(&dir, &format!("osd.{id}"), 9), "osd.{id} was running");
    }
    std::thread::sleep(Duration::from_millis(300));
    // They come back signing every frame, to clients and to each other.
    let mut text = std::fs::read_to_string(dir.join("sepia.conf")).unwrap();
    text.push_str("\n[osd]\nms_mode = sign\n");
    std::fs::write(dir.join("sepia.conf"), text).unwrap();
    for id in 0..2 {
        cluster::start_osd(&dir, id).unwrap();
    }
    cluster::wait_for_osds_up(&dir, 2, Duration::from_secs(30)).unwrap();
    // The synchronous facade sees the same objects.
    let sync = sepia_client::blocking::Cluster::connect(&conf, "client.admin").unwrap();
    let pool = sync.pool("rbd").unwrap();
    assert_eq!(pool.read("small", 0, 0).unwrap(), b"hello World");
    pool.write_full("sync", b"blocking").unwrap();
    assert_eq!(pool.stat("sync").unwrap().size, 8);
    assert_eq!(sync.command(&["osd", "pool", "ls"], true).unwrap().2, r#"["rbd"]"#);
    drop(pool);
    drop(sync);
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = rados.ioctx("rbd").unwrap();
        assert_eq!(io.read("big", 0, 0).await.unwrap(), payload, "acknowledged data survived kill -9");
        assert_eq!(io.read("small", 0, 0).await.unwrap(), b"hello World");
        assert_eq!(io.read("log", 0, 0).await.unwrap().len(), 32);
        for i in 1..50 {
            assert_eq!(io.read(&format!("obj{i}"), 0, 0).await.unwrap(), format!("value {i}").as_bytes());
        }
        // And the cluster keeps taking writes (replicated over signed
        // OSD-to-OSD connections).
        io.write_full("after", b"restart").await.unwrap();
        assert_eq!(io.read("after", 0, 0).await.unwrap(), b"restart");
        let map = rados.osdmap();
        let osd = map.osd(0).unwrap();
        let crc_client = sepia_client::conn::Conn::connect(&osd.addrs[0], "client.admin", [0; 16]).await.unwrap();
        assert!(crc_client.frames_signed(), "an OSD with ms_mode = sign signs for a crc client too");
    });
    drop(c);
}

#[test]
fn a_killed_osd_is_marked_down_and_io_continues() {
    std::env::set_var("CARGO_BIN_EXE_sepia-osd", env!("CARGO_BIN_EXE_sepia-osd"));
    let dir = std::env::temp_dir().join(format!("sepia-e2e-down-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    cluster::up(&UpOptions { dir: dir.clone(), mons: 1, osds: 3, down_out_interval_s: 600 }).expect("cluster up");
    let c = Cluster { dir: dir.clone() };
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let args: Vec<String> = "osd pool create rbd 16 --size 3 --min-size 2".split(' ').map(String::from).collect();
        assert_eq!(rados.command(&args, false).await.unwrap().result, 0);
        while rados.osdmap().pool_by_name("rbd").is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let io = rados.ioctx("rbd").unwrap();
        for i in 0..20 {
            if let Err(e) = io.write_full(&format!("before{i}"), b"x").await {
                panic!("before{i}: {e}\n{}", log_tails(&dir));
            }
        }
        assert!(cluster::signal(&dir, "osd.2", 9));
        let killed = std::time::Instant::now();
        // Peers stop hearing it and report it; the monitor marks it down.
        loop {
            let map = rados.osdmap();
            if !map.is_up(2) {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(60), "osd.2 never marked down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("osd.2 marked down {:.1} s after kill -9", killed.elapsed().as_secs_f64());
        // Two replicas left >= min_size: writes and reads go on.
        for i in 0..20 {
            io.write_full(&format!("after{i}"), b"y").await.unwrap();
            assert_eq!(io.read(&format!("before{i}"), 0, 0).await.unwrap(), b"x");
        }
        // SIGTERM: a clean shutdown says goodbye (down at once, no grace) and
        // checkpoints its stores before exiting.
        assert!(cluster::signal(&dir, "osd.1", 15));
        let stopped = std::time::Instant::now();
        while rados.osdmap().is_up(1) {
            assert!(stopped.elapsed() < Duration::from_secs(30), "osd.1 never marked down after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("osd.1 marked down {:.1} s after SIGTERM", stopped.elapsed().as_secs_f64());
        let log = dir.join("out").join("osd.1.log");
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("stores checkpointed") {
            assert!(stopped.elapsed() < Duration::from_secs(30), "osd.1 did not finish its shutdown");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    drop(c);
}

#[test]
fn a_returning_osd_catches_up_from_the_pg_log_before_it_serves() {
    std::env::set_var("CARGO_BIN_EXE_sepia-osd", env!("CARGO_BIN_EXE_sepia-osd"));
    let dir = std::env::temp_dir().join(format!("sepia-e2e-catchup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    cluster::up(&UpOptions { dir: dir.clone(), mons: 1, osds: 2, down_out_interval_s: 600 }).expect("cluster up");
    let c = Cluster { dir: dir.clone() };
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let wait_down = |rados: &std::sync::Arc<Rados>, osd: i32| {
        let start = std::time::Instant::now();
        while rados.osdmap().is_up(osd) {
            assert!(start.elapsed() < Duration::from_secs(30), "osd.{osd} never marked down");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let args: Vec<String> = "osd pool create rbd 8 --size 2 --min-size 1".split(' ').map(String::from).collect();
        assert_eq!(rados.command(&args, false).await.unwrap().result, 0);
        while rados.osdmap().pool_by_name("rbd").is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let io = rados.ioctx("rbd").unwrap();
        for i in 0..16 {
            io.write_full(&format!("obj{i}"), b"old").await.unwrap();
        }
        // osd.1 leaves; osd.0 alone takes new writes, overwrites and removes.
        assert!(cluster::signal(&dir, "osd.1", 15));
        wait_down(&rados, 1);
        for i in 0..16 {
            io.write_full(&format!("obj{i}"), b"new").await.unwrap();
            io.write_full(&format!("while-down{i}"), format!("{i}").as_bytes()).await.unwrap();
        }
        io.remove("obj15").await.unwrap();
        io.append("obj14", b"+").await.unwrap();
    });
    // osd.1 comes back: its PGs peer, the primary pushes what it lacks.
    cluster::start_osd(&dir, 1).unwrap();
    cluster::wait_for_osds_up(&dir, 2, Duration::from_secs(30)).unwrap();
    let start = std::time::Instant::now();
    loop {
        let s = cluster::pg_summary(&dir, 0);
        let settled = cluster::pgs_settled(&s);
        if settled {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "osd.0's PGs never became clean: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        // Now osd.0 leaves: osd.1 is primary everywhere and must serve
        // the writes it missed, not its stale copies.
        assert!(cluster::signal(&dir, "osd.0", 15));
        wait_down(&rados, 0);
        let io = rados.ioctx("rbd").unwrap();
        for i in 0..14 {
            assert_eq!(io.read(&format!("obj{i}"), 0, 0).await.unwrap(), b"new", "obj{i} on the returned OSD");
        }
        assert_eq!(io.read("obj14", 0, 0).await.unwrap(), b"new+");
        assert!(io.read("obj15", 0, 0).await.is_err(), "the removal reached the returned OSD");
        for i in 0..16 {
            assert_eq!(io.read(&format!("while-down{i}"), 0, 0).await.unwrap(), format!("{i}").as_bytes());
        }
        // A resent write (same request id) is recognised, not applied twice.
        let map = rados.osdmap();
        let pool = map.pool_by_name("rbd").unwrap().id;
        let reqid_append = vec![SubOp::Append { data_offset: 0, len: 1 }];
        let obj = sepia_proto::msg::ObjectId::new("dup");
        let (first, _) = rados.operate_with_tid(pool, obj.clone(), reqid_append.clone(), b"x".to_vec(), 424242).await.unwrap();
        let (again, _) = rados.operate_with_tid(pool, obj, reqid_append, b"x".to_vec(), 424242).await.unwrap();
        assert_eq!((first.result, again.result), (0, 0));
        assert_eq!(first.version, again.version, "the resend got the first write's version");
        assert_eq!(io.read("dup", 0, 0).await.unwrap(), b"x", "applied once");
    });
    drop(c);
}

/// The last lines of every daemon log, for failure messages.
fn log_tails(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir.join("out")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- {}\n{}\n", entry.path().display(), lines[lines.len().saturating_sub(15)..].join("\n")));
    }
    out
}
