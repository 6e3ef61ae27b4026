//! Many clients connecting at once to one monitor: each gets its answers
//! (a connection's first request must not outrun its registration).

use std::time::Duration;

use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::monc::MonClient;
use sepia_client::rados::Rados;

#[test]
fn every_one_of_many_concurrent_clients_is_answered() {
    let dir = std::env::temp_dir().join(format!("sepia-manyclients-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("CARGO_BIN_EXE_sepia-mon", env!("CARGO_BIN_EXE_sepia-mon"));
    cluster::up(&UpOptions { dir: dir.clone(), mons: 1, osds: 0, down_out_interval_s: 600 }).unwrap();
    let conf = Config::load(&dir.join("sepia.conf").to_string_lossy()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let failures = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..48 {
            let conf = conf.clone();
            tasks.push(tokio::spawn(async move {
                // Half subscribe to the OSD map, half run a command: both
                // answers go back on the connection that asked.
                let work = async {
                    if i % 2 == 0 {
                        Rados::connect_conf(&conf, "client.admin").await.map(|_| ()).map_err(|e| e.to_string())
                    } else {
                        let mut monc = MonClient::from_conf(&conf, "client.admin").map_err(|e| e.to_string())?;
                        monc.command(&["osd".to_string(), "dump".to_string()], true).await.map(|_| ()).map_err(|e| e.to_string())
                    }
                };
                match tokio::time::timeout(Duration::from_secs(20), work).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("client {i}: {e}")),
                    Err(_) => Some(format!("client {i}: no answer in 20 s")),
                }
            }));
        }
        let mut failures = Vec::new();
        for t in tasks {
            if let Some(f) = t.await.unwrap() {
                failures.push(f);
            }
        }
        failures
    });
    let _ = cluster::down(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{} of 48 clients failed: {failures:?}", failures.len());
}
