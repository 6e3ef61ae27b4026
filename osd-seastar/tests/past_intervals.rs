//! Past intervals survive a restart, with real processes: on a size-2,
//! min_size-1 pool, writes that one OSD acknowledged alone while the other
//! was down must not be hidden when the other comes back alone after the
//! first died too. The returning OSD walks the maps it missed (the monitor
//! sends the incrementals since the epoch it recorded), learns that the
//! first OSD went active alone, and keeps those PGs down until it answers.

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

#[test]
fn a_lone_acknowledged_write_is_not_hidden_by_an_osd_returning_alone() {
    let (c, conf) = start("lone-writes", 2);
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
    let logged = || {
        String::from_utf8_lossy(
            std::fs::read(&log)
                .unwrap_or_default()
                .get(mark..)
                .unwrap_or_default(),
        )
        .to_string()
    };
    let summary = || {
        logged()
            .lines()
            .rev()
            .find(|l| l.contains(" pgs: "))
            .unwrap_or("")
            .to_string()
    };
    cluster::start_osd(&c.dir, 1).unwrap();
    rt.block_on(async {
        let rados = Rados::connect_conf(&conf, "client.admin").await.unwrap();
        // Peering ends (down, or — the bug — active).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = summary();
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
        let mut reads = Vec::new();
        for i in 0..OBJECTS {
            let io = io.clone();
            reads.push(tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(3), io.read(&format!("o{i}"), 0, 0)).await
            }));
        }
        for (i, r) in reads.into_iter().enumerate() {
            if let Ok(Ok(v)) = r.await.unwrap() {
                panic!(
                    "o{i} served by osd.1 alone: {:?}",
                    String::from_utf8_lossy(&v)
                );
            }
        }
        // Its PGs are down, waiting for osd.0, and the log says why.
        let s = summary();
        assert!(
            s.contains("down") && !s.contains("active"),
            "osd.1 alone must serve none of these PGs: {s}"
        );
        assert!(
            logged().contains("down: waiting for one of osds"),
            "osd.1 never said its PGs wait for osd.0"
        );
    });
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
