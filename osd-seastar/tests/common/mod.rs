//! Helpers shared by the OSD process tests (each test file includes this
//! module; not every file uses every helper).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sepia_client::cluster::{self, Guard, UpOptions};
use sepia_client::config::Config;
use sepia_client::rados::{IoCtx, Rados};

/// Starts a local cluster of one monitor and `osds` OSDs (the OSD binary
/// of this build) in a fresh temporary folder named after `name`; it is
/// stopped and deleted when the guard drops.
pub fn cluster_up(name: &str, osds: usize) -> (Guard, Config) {
    std::env::set_var("CARGO_BIN_EXE_sepia-osd", env!("CARGO_BIN_EXE_sepia-osd"));
    let dir = std::env::temp_dir().join(format!("sepia-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    cluster::up(&UpOptions { dir: dir.clone(), mons: 1, osds, down_out_interval_s: 600 }).expect("cluster up (needs sepia-mon built next to the tests)");
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    (Guard { dir }, conf)
}

/// The tokio runtime the client side of a test runs on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Creates a replicated pool and waits until the client's map has it.
pub async fn pool(rados: &Arc<Rados>, name: &str, size: u32, min_size: u32, pg_num: u32) -> IoCtx {
    let args: Vec<String> = format!("osd pool create {name} {pg_num} --size {size} --min-size {min_size}").split(' ').map(String::from).collect();
    assert_eq!(rados.command(&args, false).await.unwrap().result, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rados.osdmap().pool_by_name(name).is_none() {
        assert!(Instant::now() < deadline, "pool never reached the client");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rados.ioctx(name).unwrap()
}
