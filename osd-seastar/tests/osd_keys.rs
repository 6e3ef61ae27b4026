//! Per-OSD keys (Ceph's model) with real processes from the launcher:
//! every OSD authenticates as `osd.N` with its own key and Ceph's OSD
//! caps, OSDs still replicate to each other (peers authorise each other's
//! `osd.N` tickets) and clients still read and write; a key that is not
//! the OSD's own is refused; an OSD's key may not change the cluster
//! (pools, auth) or speak for another OSD.

use std::path::Path;
use std::time::{Duration, Instant};

use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::conn::{authenticate, fetch_service_key, Conn};
use sepia_client::monc::MonClient;
use sepia_client::rados::Rados;
use sepia_proto::auth::entity::EntityName;
use sepia_proto::auth::key::Secret;
use sepia_proto::auth::keyring::Keyring;
use sepia_proto::errno::Errno;
use sepia_proto::msg::{Body, OsdBeacon, OsdBoot, OsdFailure, OsdStat};

/// Stopped and deleted when dropped.
use sepia_client::cluster::Guard as Cluster;

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(|w| w.replace('~', " ")).collect()
}

fn osd_log(dir: &Path, id: i32) -> String {
    std::fs::read_to_string(dir.join("out").join(format!("osd.{id}.log"))).unwrap_or_default()
}

/// The key in OSD `id`'s own keyring (which holds `osd.ID` and nothing else).
fn osd_key(dir: &Path, id: i32) -> Secret {
    let path = dir.join("data").join(format!("osd.{id}")).join("keyring");
    let ring = Keyring::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let names: Vec<String> = ring.entries.keys().map(|n| n.to_string()).collect();
    assert_eq!(names, vec![format!("osd.{id}")], "{}", path.display());
    ring.get(&EntityName::parse(&format!("osd.{id}")).unwrap()).unwrap().key.clone()
}

/// Is OSD `id` up in the map (asked as the admin)?
async fn is_up(conf: &Config, id: i32) -> bool {
    let mut monc = MonClient::from_conf(conf, "client.admin").unwrap();
    let r = monc.command(&words("osd dump"), true).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.output).unwrap();
    v["osds"].as_array().unwrap().iter().any(|o| o["osd"].as_i64() == Some(id as i64) && o["up"] == 1)
}

/// Polls `cond` (an expression that may `.await`) until it holds; fails
/// with the OSDs' logs after `within`.
macro_rules! wait_until {
    ($what:expr, $within:expr, $dir:expr, $cond:expr) => {{
        let start = Instant::now();
        while !$cond {
            assert!(start.elapsed() < $within, "timed out waiting for {}\n--- osd.0\n{}\n--- osd.1\n{}", $what, osd_log($dir, 0), osd_log($dir, 1));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }};
}

/// The pids of the cluster's running daemons (our children: the launcher
/// spawned them from this process).
fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_dir(dir.join("run")).unwrap().flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok()).collect()
}

#[test]
fn osds_authenticate_with_their_own_keys_and_are_held_to_profile_osd() {
    std::env::set_var("CARGO_BIN_EXE_sepia-osd", env!("CARGO_BIN_EXE_sepia-osd"));
    let dir = std::env::temp_dir().join(format!("sepia-osd-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    cluster::up(&UpOptions { dir: dir.clone(), mons: 1, osds: 2, down_out_interval_s: 600 }).expect("cluster up");
    let c = Cluster { dir: dir.clone() };
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let keys = [osd_key(&dir, 0), osd_key(&dir, 1)];
    assert_ne!(keys[0], keys[1], "every OSD has a key of its own");
    rt.block_on(async {
        // (a) The monitors know osd.0 and osd.1 with those keys and Ceph's
        // OSD caps; each OSD says it authenticated as itself.
        let mut admin = MonClient::from_conf(&conf, "client.admin").unwrap();
        let r = admin.command(&words("auth ls"), true).await.unwrap();
        assert_eq!(r.result, 0, "{}", r.status);
        let v: serde_json::Value = serde_json::from_str(&r.output).unwrap();
        for (id, key) in keys.iter().enumerate() {
            let e =
                v["auth_dump"].as_array().unwrap().iter().find(|e| e["entity"] == format!("osd.{id}")).unwrap_or_else(|| panic!("osd.{id} in auth ls: {v}"));
            assert_eq!(e["key"].as_str(), Some(key.to_keyring_string().as_str()));
            assert_eq!(e["caps"]["mon"], "allow profile osd");
            assert_eq!(e["caps"]["osd"], "allow *");
            assert!(osd_log(&dir, id as i32).contains(&format!("authenticating as osd.{id}")), "{}", osd_log(&dir, id as i32));
        }
        // Replication between the OSDs and client I/O work with per-OSD tickets.
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        assert_eq!(rados.command(&words("osd pool create rbd 8 --size 2"), false).await.unwrap().result, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while rados.osdmap().pool_by_name("rbd").is_none() {
            assert!(Instant::now() < deadline, "the pool never reached the client's map");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let io = rados.ioctx("rbd").unwrap();
        for i in 0..20 {
            io.write_full(&format!("obj{i}"), format!("value {i}").as_bytes()).await.unwrap();
        }
        for i in 0..20 {
            assert_eq!(io.read(&format!("obj{i}"), 0, 0).await.unwrap(), format!("value {i}").as_bytes());
        }

        // (c) osd.0's key reads the maps but changes nothing and speaks
        // only for osd.0.
        let mut osd0 = MonClient::with_secret(conf.mon_addrs(), "osd.0", Some(keys[0].clone())).unwrap();
        let r = osd0.command(&words("osd dump"), true).await.unwrap();
        assert_eq!(r.result, 0, "profile osd reads the map: {}", r.status);
        let denied = Errno::Access.result();
        for line in [
            "osd pool create evil 8",
            "osd pool rm rbd rbd --yes-i-really-really-mean-it",
            "auth get-or-create client.evil mon allow~* osd allow~*",
            "auth caps osd.0 mon allow~*",
            "auth rm osd.1",
            "auth get client.admin",
            "auth ls",
            "osd out 1",
        ] {
            let r = osd0.command(&words(line), false).await.unwrap();
            assert_eq!(r.result, denied, "{line}: {r:?}");
            assert!(r.status.contains("access denied") && r.status.contains("osd.0"), "{line}: {}", r.status);
        }
        let boot1 = Body::OsdBoot(OsdBoot { osd: 1, uuid: [9; 16], addrs: vec!["127.0.0.1:9".into()], have_epoch: 0, hostname: "x".into() });
        let beacon1 = Body::OsdBeacon(OsdBeacon { osd: 1, epoch: 1, stat: OsdStat::default() });
        let report_as_1 = Body::OsdFailure(OsdFailure { reporter: 1, target: 0, epoch: 1, failed_for_ms: 60_000, still_failed: true });
        for body in [boot1, beacon1, report_as_1] {
            let r = osd0.request(&body).await.unwrap();
            assert_eq!(r.result, denied, "{body:?}: {r:?}");
        }
        // Nothing changed: no pool, osd.1's key and caps as they were, all up.
        let r = admin.command(&words("osd pool ls"), true).await.unwrap();
        assert_eq!(r.output.trim(), r#"["rbd"]"#);
        let r = admin.command(&words("auth get osd.1"), false).await.unwrap();
        let ring = Keyring::parse(&r.output).unwrap();
        let e = ring.get(&EntityName::parse("osd.1").unwrap()).unwrap();
        assert_eq!((&e.key, e.caps.get("mon").map(String::as_str)), (&keys[1], Some("allow profile osd")));
        assert!(is_up(&conf, 0).await && is_up(&conf, 1).await);
        // The OSD service key is the only one an OSD's key fetches.
        let addr = conf.mon_addrs()[0].clone();
        let mut conn = Conn::connect(&addr, "osd.0", [0; 16]).await.unwrap();
        let g = authenticate(&mut conn, "osd.0", &keys[0]).await.unwrap();
        assert!(fetch_service_key(&mut conn, &g.session_key, "osd").await.is_ok());
        let e = fetch_service_key(&mut conn, &g.session_key, "mon").await.unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");

        // (b) osd.1 restarted with osd.0's key under its name, then with a
        // made-up key: the monitors refuse it and it stays down; with its
        // own key back it comes up again.
        assert!(cluster::signal(&dir, "osd.1", 15));
        wait_until!("osd.1 down after SIGTERM", Duration::from_secs(30), &dir, !is_up(&conf, 1).await);
        let keyring = dir.join("data").join("osd.1").join("keyring");
        let own = std::fs::read_to_string(&keyring).unwrap();
        let made_up = Secret::generate(1).to_keyring_string();
        for (n, wrong) in [keys[0].to_keyring_string(), made_up].into_iter().enumerate() {
            std::fs::write(&keyring, format!("[osd.1]\n\tkey = {wrong}\n")).unwrap();
            let before = osd_log(&dir, 1).matches("authentication refused").count();
            cluster::start_osd(&dir, 1).unwrap();
            wait_until!("osd.1 refused by the monitors", Duration::from_secs(30), &dir, osd_log(&dir, 1).matches("authentication refused").count() > before);
            assert!(!is_up(&conf, 1).await, "wrong key {n}: osd.1 must not come up\n{}", osd_log(&dir, 1));
            assert!(cluster::signal(&dir, "osd.1", 9));
        }
        std::fs::write(&keyring, own).unwrap();
        cluster::start_osd(&dir, 1).unwrap();
        wait_until!("osd.1 up with its own key", Duration::from_secs(60), &dir, is_up(&conf, 1).await);
        for i in 0..20 {
            assert_eq!(io.read(&format!("obj{i}"), 0, 0).await.unwrap(), format!("value {i}").as_bytes());
        }
    });
    drop(c);
}

/// A cluster folder started again (`up` on it) starts its daemons with
/// the keys they have; an OSD of an older folder (its data file as
/// `data/osd.N`, registered as client.admin, no key of its own) gets its
/// own key on the way.
#[test]
fn up_again_restarts_a_cluster_and_gives_old_osds_their_keys() {
    std::env::set_var("CARGO_BIN_EXE_sepia-osd", env!("CARGO_BIN_EXE_sepia-osd"));
    let dir = std::env::temp_dir().join(format!("sepia-osd-keys-again-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = UpOptions { dir: dir.clone(), mons: 1, osds: 1, down_out_interval_s: 600 };
    cluster::up(&opts).expect("cluster up");
    let c = Cluster { dir: dir.clone() };
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    let key0 = osd_key(&dir, 0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // An OSD the way older launchers made it: sepia-osd on data/osd.1 with
    // only the admin keyring (it registers itself as client.admin).
    let legacy_log = dir.join("out").join("legacy-osd.1.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sepia-osd"))
        .args(["--id", "1", "--size-mib", "128", "-c"])
        .arg(dir.join("sepia.conf"))
        .arg("--data")
        .arg(dir.join("data").join("osd.1"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&legacy_log).unwrap())
        .spawn()
        .unwrap();
    rt.block_on(async { wait_until!("the legacy osd.1 up", Duration::from_secs(60), &dir, is_up(&conf, 1).await) });
    let log = std::fs::read_to_string(&legacy_log).unwrap();
    assert!(log.contains("authenticating as client.admin"), "{log}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    // Everything down, and gone (the daemons are our children: reap them).
    let running = pids(&dir);
    cluster::down(&dir).unwrap();
    for pid in running {
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    // `up` again: the monitor and osd.0 with their stores and key; osd.1
    // gets the key of osd.1 from the monitors, and runs with it.
    let addrs = cluster::up(&opts).expect("up again");
    assert_eq!(addrs, conf.mon_addrs());
    assert_eq!(osd_key(&dir, 0), key0, "osd.0 kept its key");
    let ring = Keyring::parse(&std::fs::read_to_string(dir.join("data").join("osd.1.keyring")).unwrap()).unwrap();
    let e = ring.get(&EntityName::parse("osd.1").unwrap()).expect("osd.1 got a key");
    assert_eq!(e.caps.get("mon").map(String::as_str), Some("allow profile osd"));
    assert!(osd_log(&dir, 1).contains("authenticating as osd.1"), "{}", osd_log(&dir, 1));
    rt.block_on(async { assert!(is_up(&conf, 0).await && is_up(&conf, 1).await) });
    drop(c);
}
