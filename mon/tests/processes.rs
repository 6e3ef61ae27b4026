//! Real monitor processes on loopback, started by the project's own
//! launcher, killed with SIGKILL and restarted: committed changes survive,
//! and the admin commands answer as Ceph's do.

use std::path::PathBuf;
use std::time::Duration;

use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::monc::MonClient;

/// Stopped and deleted when dropped.
use sepia_client::cluster::Guard as Cluster;

fn up(name: &str, mons: usize) -> Cluster {
    let dir = std::env::temp_dir().join(format!("sepia-mon-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The launcher finds sepia-mon next to the running binary.
    std::env::set_var("CARGO_BIN_EXE_sepia-mon", env!("CARGO_BIN_EXE_sepia-mon"));
    cluster::up(&UpOptions { dir: dir.clone(), mons, osds: 0, down_out_interval_s: 600 }).expect("cluster up");
    Cluster { dir }
}

fn run(dir: &PathBuf, line: &str, json: bool) -> (i32, String, String) {
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut monc = MonClient::from_conf(&conf, "client.admin").unwrap();
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let r = monc.command(&args, json).await.expect("a monitor answers");
        (r.result, r.status, r.output)
    })
}

#[test]
fn one_monitor_keeps_committed_changes_across_kill_9() {
    let c = up("solo", 1);
    for i in 0..3 {
        assert_eq!(run(&c.dir, "osd new", false).2, i.to_string());
    }
    assert_eq!(run(&c.dir, "osd pool create rbd 16 --size 2", false).0, 0);
    assert_eq!(run(&c.dir, "osd pool ls", true).2, r#"["rbd"]"#);
    let q: serde_json::Value = serde_json::from_str(&run(&c.dir, "quorum_status", true).2).unwrap();
    assert_eq!(q["quorum_names"], serde_json::json!(["a"]));
    assert_eq!(q["quorum_leader_name"], "a");
    let epoch_before: serde_json::Value = serde_json::from_str(&run(&c.dir, "osd dump", true).2).unwrap();

    assert!(cluster::signal(&c.dir, "mon.a", 9), "mon.a was running");
    std::thread::sleep(Duration::from_millis(200));
    cluster::start_mon(&c.dir, "a").unwrap();
    cluster::wait_for_quorum(&c.dir, Duration::from_secs(20)).unwrap();

    let after: serde_json::Value = serde_json::from_str(&run(&c.dir, "osd dump", true).2).unwrap();
    assert_eq!(after["epoch"], epoch_before["epoch"], "same epoch after replay");
    assert_eq!(after["pools"][0]["pool_name"], "rbd");
    assert_eq!(after["osds"].as_array().unwrap().len(), 3);
    // And it keeps working.
    assert_eq!(run(&c.dir, "osd pool create second 8", false).0, 0);
    assert_eq!(run(&c.dir, "osd pool ls", true).2, r#"["rbd","second"]"#);
    let (code, status, _) = run(&c.dir, "osd pool create bad 0", false);
    assert_ne!(code, 0, "{status}");
}

#[test]
fn clients_follow_the_osdmap_through_a_subscription() {
    let c = up("subscribe", 1);
    let conf = Config::load(&c.dir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let rados = sepia_client::rados::Rados::connect_conf(&conf, "client.admin").await.expect("connect");
        let first = rados.osdmap().epoch;
        assert!(first >= 1);
        assert!(rados.ioctx("rbd").is_err(), "no pool yet");
        let args: Vec<String> = "osd pool create rbd 8".split(' ').map(String::from).collect();
        assert_eq!(rados.command(&args, false).await.unwrap().result, 0);
        for _ in 0..20 {
            let new: Vec<String> = "osd new".split(' ').map(String::from).collect();
            assert_eq!(rados.command(&new, false).await.unwrap().result, 0);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let map = rados.osdmap();
            if map.pool_by_name("rbd").is_some() && map.osds.iter().filter(|o| o.exists).count() == 20 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "map never caught up: epoch {}", map.epoch);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(rados.ioctx("rbd").is_ok());
        assert!(rados.osdmap().epoch > first);
    });
}

#[test]
fn cephx_style_auth_is_required_and_caps_are_enforced() {
    use sepia_proto::auth::keyring::Keyring;
    let c = up("auth", 1);
    let conf = Config::load(&c.dir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        // No key: refused.
        let mut anon = MonClient::new(conf.mon_addrs(), "client.admin").unwrap();
        let r = anon.command(&args("osd dump"), false).await.unwrap();
        assert_eq!(r.result, -13, "{}", r.status);
        // A wrong key: the exchange itself fails.
        let mut forger = MonClient::with_secret(conf.mon_addrs(), "client.admin", Some(sepia_proto::auth::key::Secret::generate(0))).unwrap();
        assert!(forger.command(&args("osd dump"), false).await.is_err());
        // The admin (allow *) creates a read-only entity.
        let mut admin = MonClient::from_conf(&conf, "client.admin").unwrap();
        let mut create = args("auth get-or-create client.ro");
        create.push("mon".into());
        create.push("allow r".into());
        let r = admin.command(&create, false).await.unwrap();
        assert_eq!(r.result, 0, "{}", r.status);
        let ring = Keyring::parse(&r.output).unwrap();
        let (_, entry) = ring.entries.iter().next().unwrap();
        let mut ro = MonClient::with_secret(conf.mon_addrs(), "client.ro", Some(entry.key.clone())).unwrap();
        assert_eq!(ro.command(&args("osd dump"), true).await.unwrap().result, 0, "reads are allowed");
        let r = ro.command(&args("osd pool create nope 8"), false).await.unwrap();
        assert_eq!(r.result, -13, "writes are not: {}", r.status);
        assert_eq!(admin.command(&args("osd pool create yes 8"), false).await.unwrap().result, 0);
    });
}

#[test]
fn hostile_bytes_close_only_their_connection_and_the_monitor_keeps_serving() {
    use std::io::{Read, Write};
    let c = up("garbage", 1);
    let conf = Config::load(&c.dir.join("sepia.conf").to_string_lossy()).unwrap();
    let addr = conf.mon_addrs()[0].clone();
    let closed = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                // Still open when the timeout hit.
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
                Err(_) => return true,
            }
        }
    };
    // Random bytes.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let garbage: Vec<u8> = (0..65_536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = s.write_all(&garbage);
    assert!(closed(&mut s), "garbage: the monitor kept the connection");
    // A valid header announcing a 4 GiB body.
    let hello = sepia_proto::hello::local_hello("client.x", [0; 16]);
    let f = sepia_proto::msg::encode(&sepia_proto::msg::Body::Hello(hello), 1, &[], None).unwrap();
    let mut header = f.header.to_vec();
    header[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(&header).unwrap();
    assert!(closed(&mut s), "oversized body: the monitor kept the connection");
    // A half frame left hanging does not block anyone else.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.write_all(&f.header[..7]).unwrap();
    assert_eq!(run(&c.dir, "osd pool create after 8", false).0, 0);
    assert_eq!(run(&c.dir, "osd pool ls", true).2, r#"["after"]"#);
    drop(idle);
}
