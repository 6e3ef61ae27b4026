//! Past intervals survive a restart, with real processes: on a size-2,
//! min_size-1 pool, writes that one OSD acknowledged alone while the other
//! was down must not be hidden when the other comes back alone after the
//! first died too. The returning OSD walks the maps it missed (the monitor
//! sends the incrementals since the epoch it recorded), learns that the
//! first OSD went active alone, and keeps those PGs down until it answers,
//! or until the operator marks it lost (`osd lost`) and gives up what only
//! it held.

mod common;
use common::{pool, runtime};

use std::sync::Arc;
use std::time::{Duration, Instant};

use sepia_client::cluster::{self, Guard as Cluster, UpOptions};
use sepia_client::config::Config;
use sepia_client::rados::Rados;

const OBJECTS: usize = 12;

fn start(name: &str, osds: usize) -> (Cluster, Config) {
    std::env::set_var("CARGO_BIN_EXE_sepia-osd", env!("CARGO_BIN_EXE_sepia-osd"));
    let dir = std::env::temp_dir().join(format!("sepia-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    cluster::up(&UpOptions {
        dir: dir.clone(),
        mons: 1,
        osds,
        down_out_interval_s: 600,
    })
    .expect("cluster up");
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    (Cluster { dir }, conf)
}

/// `osd down ID` (the process is already dead), then waits until the
/// client's map says so.
async fn mark_down(rados: &Arc<Rados>, id: i32) {
    let args: Vec<String> = ["osd", "down", &id.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(rados.command(&args, false).await.unwrap().result, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while rados.osdmap().is_up(id) {
        assert!(Instant::now() < deadline, "osd.{id} never marked down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The reads of every object from osd.1 alone, each bounded by `wait`:
/// the content of each one served.
async fn reads(io: &sepia_client::rados::IoCtx, wait: Duration) -> Vec<Option<Vec<u8>>> {
    let mut reads = Vec::new();
    for i in 0..OBJECTS {
        let io = io.clone();
        reads.push(tokio::spawn(async move {
            tokio::time::timeout(wait, io.read(&format!("o{i}"), 0, 0)).await
        }));
    }
    let mut served = Vec::new();
    for r in reads {
        served.push(match r.await.unwrap() {
            Ok(Ok(v)) => Some(v),
            _ => None,
        });
    }
    served
}

/// Both OSDs write "first"; osd.1 (B) dies and osd.0 (A) alone
/// acknowledges "second"; A dies too and B restarts alone. Checks that B
/// serves nothing and says it waits for A. Returns the cluster, its
/// config, the runtime and what B logged since its restart.
fn b_returns_alone(
    name: &str,
) -> (
    Cluster,
    Config,
    tokio::runtime::Runtime,
    impl Fn() -> String,
) {
    let (c, conf) = start(name, 2);
    let rt = runtime();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = pool(&rados, "p", 2, 1, 4).await;
        for i in 0..OBJECTS {
            io.write_full(&format!("o{i}"), b"first").await.unwrap();
        }
        // B (osd.1) dies; A (osd.0) alone acknowledges new contents.
        assert!(cluster::signal(&c.dir, "osd.1", libc::SIGKILL));
        mark_down(&rados, 1).await;
        for i in 0..OBJECTS {
            io.write_full(&format!("o{i}"), b"second, acknowledged by osd.0 alone")
                .await
                .unwrap();
        }
        // A dies too; B comes back alone.
        assert!(cluster::signal(&c.dir, "osd.0", libc::SIGKILL));
        mark_down(&rados, 0).await;
    });
    // What osd.1 logs from now on (its log file is appended to).
    let log = c.dir.join("out").join("osd.1.log");
    let mark = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
    let logged = move || {
        String::from_utf8_lossy(
            std::fs::read(&log)
                .unwrap_or_default()
                .get(mark..)
                .unwrap_or_default(),
        )
        .to_string()
    };
    cluster::start_osd(&c.dir, 1).unwrap();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        // Peering ends (down, or — the bug — active).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = summary(&logged());
            if !s.is_empty() && !s.contains("peering") && !s.contains("stray") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "osd.1 never finished peering: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Nothing is served: every read waits (the stale "first" must
        // never come back).
        let io = rados.ioctx("p").unwrap();
        for (i, r) in reads(&io, Duration::from_secs(3)).await.into_iter().enumerate() {
            if let Some(v) = r {
                panic!(
                    "o{i} served by osd.1 alone: {:?}",
                    String::from_utf8_lossy(&v)
                );
            }
        }
        // Its PGs are down, waiting for osd.0, and the log says why.
        let s = summary(&logged());
        assert!(
            s.contains("down") && !s.contains("active"),
            "osd.1 alone must serve none of these PGs: {s}"
        );
        assert!(
            logged().contains("down: waiting for one of osds"),
            "osd.1 never said its PGs wait for osd.0"
        );
    });
    (c, conf, rt, logged)
}

/// The newest PG summary line in `log`.
fn summary(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains(" pgs: "))
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_lone_acknowledged_write_is_not_hidden_by_an_osd_returning_alone() {
    let (c, conf, rt, _logged) = b_returns_alone("lone-writes");
    // A returns: every acknowledged write reads back with its newest content.
    cluster::start_osd(&c.dir, 0).unwrap();
    cluster::wait_for_osds_up(&c.dir, 2, Duration::from_secs(30)).unwrap();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let io = rados.ioctx("p").unwrap();
        let start = Instant::now();
        loop {
            let summaries: Vec<String> = (0..2).map(|o| cluster::pg_summary(&c.dir, o)).collect();
            if summaries.iter().all(|s| cluster::pgs_settled(s)) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "PGs never became clean: {summaries:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for i in 0..OBJECTS {
            assert_eq!(
                io.read(&format!("o{i}"), 0, 0).await.unwrap(),
                b"second, acknowledged by osd.0 alone",
                "o{i}"
            );
        }
    });
    drop(c);
}

/// The operator gives osd.0 up: `osd lost 0 --yes-i-really-mean-it` lets
/// osd.1's PGs go active with what it holds ("first"); the writes only
/// osd.0 acknowledged are lost, as the operator accepted.
/// After osd.0 was given up (`how`): osd.1 goes active alone, serves what
/// it holds, says so in its log (`said`), and takes writes again.
async fn survivor_serves(rados: &Arc<Rados>, logged: &impl Fn() -> String, how: &str, said: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = summary(&logged());
        if s.contains("active") && !s.contains("down") && !s.contains("peering") {
            break;
        }
        assert!(Instant::now() < deadline, "osd.1 never went active once osd.0 was {how}: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let io = rados.ioctx("p").unwrap();
    for (i, r) in reads(&io, Duration::from_secs(10)).await.into_iter().enumerate() {
        assert_eq!(r.as_deref(), Some(&b"first"[..]), "o{i}: osd.1's copy, the only one left");
    }
    // (Said once the activation is durable.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logged().contains(said) {
        assert!(Instant::now() < deadline, "osd.1 never said it gave osd.0's writes up ({said:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    io.write_full("o0", b"third").await.unwrap();
    assert_eq!(io.read("o0", 0, 0).await.unwrap(), b"third");
}

#[test]
fn marking_the_missing_osd_lost_lets_the_survivor_serve() {
    let (c, conf, rt, logged) = b_returns_alone("lost");
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let cmd = |words: &str| words.split_whitespace().map(String::from).collect::<Vec<String>>();
        // Without the flag: refused, and nothing changes.
        let r = rados.command(&cmd("osd lost 0"), false).await.unwrap();
        assert_eq!(r.result, -libc::EPERM, "{}", r.status);
        assert!(r.status.contains("--yes-i-really-mean-it"), "{}", r.status);
        // An OSD that is up cannot be lost.
        let r = rados.command(&cmd("osd lost 1 --yes-i-really-mean-it"), false).await.unwrap();
        assert_eq!(r.result, -libc::EBUSY, "{}", r.status);
        let r = rados.command(&cmd("osd lost 0 --yes-i-really-mean-it"), false).await.unwrap();
        assert_eq!(r.result, 0, "{}", r.status);
        assert!(r.status.starts_with("marked osd lost in epoch "), "{}", r.status);
        let dump = rados.command(&cmd("osd dump"), true).await.unwrap();
        let dump: serde_json::Value = serde_json::from_str(&dump.output).unwrap();
        let osd0 = dump["osds"].as_array().unwrap().iter().find(|o| o["osd"] == 0).unwrap().clone();
        assert!(osd0["lost_at"].as_u64().unwrap() > 0, "{osd0}");
        survivor_serves(&rados, &logged, "lost", "active without waiting for lost OSDs").await;
    });
    drop(c);
}

#[test]
fn removing_the_missing_osd_lets_the_survivor_serve() {
    let (c, conf, rt, logged) = b_returns_alone("removed");
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        let cmd = |words: &str| words.split_whitespace().map(String::from).collect::<Vec<String>>();
        // osd.0 is down and never coming back: the operator removes it.
        let r = rados.command(&cmd("osd rm 0"), false).await.unwrap();
        assert_eq!(r.result, 0, "{}", r.status);
        survivor_serves(&rados, &logged, "removed", "osd.0 removed").await;
    });
    drop(c);
}
