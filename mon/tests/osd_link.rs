//! An OSD's monitor link against a real monitor process: boot puts the
//! OSD up with its per-shard addresses, beacons keep it up, goodbye marks
//! it down at once.

use std::time::{Duration, Instant};

use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::monc::MonClient;
use sepia_osd::monlink::{MonLink, MonLinkConfig};

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn boot_beacon_and_goodbye() {
    let dir = std::env::temp_dir().join(format!("sepia-osdlink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("CARGO_BIN_EXE_sepia-mon", env!("CARGO_BIN_EXE_sepia-mon"));
    cluster::up(&UpOptions { dir: dir.clone(), mons: 1, osds: 0, down_out_interval_s: 600 }).unwrap();
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    let uuid = [7u8; 16];
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let out = rt.block_on(async {
        let mut monc = MonClient::from_conf(&conf, "client.admin").unwrap();
        let args = vec!["osd".to_string(), "new".to_string(), sepia_proto::uuid::format(&uuid)];
        monc.command(&args, false).await.unwrap()
    });
    assert_eq!((out.result, out.output.as_str()), (0, "0"));
    let shard_addrs = vec!["127.0.0.1:7100".to_string(), "127.0.0.1:7101".to_string()];
    let link = MonLink::start(MonLinkConfig {
        mon_addrs: conf.mon_addrs(),
        osd: 0,
        uuid,
        shard_addrs: shard_addrs.clone(),
        hostname: "testhost".into(),
        beacon_interval: Duration::from_millis(200),
        auth_entity: "client.admin".into(),
        secret: conf.secret_for("client.admin").unwrap(),
        base: None,
    })
    .unwrap();
    let maps = link.maps.clone();
    wait_for("osd.0 up in the map", Duration::from_secs(15), || {
        let m = maps.borrow().clone();
        m.osd(0).is_some_and(|o| o.up && o.addrs == shard_addrs)
    });
    let m = maps.borrow().clone();
    assert!(m.crush.item_id("osd.0").is_some(), "placed in CRUSH at boot");
    assert!(m.crush.item_id("testhost").is_some(), "under its host");
    link.shutdown();
    // The link is gone; ask the monitor directly.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    wait_for("osd.0 marked down after goodbye", Duration::from_secs(10), || {
        rt.block_on(async {
            let mut monc = MonClient::from_conf(&conf, "client.admin").unwrap();
            let r = monc.command(&["osd".to_string(), "dump".to_string()], true).await.unwrap();
            let v: serde_json::Value = serde_json::from_str(&r.output).unwrap();
            v["osds"][0]["up"] == 0
        })
    });
    let _ = cluster::down(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}
