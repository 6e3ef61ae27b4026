//! Helpers shared by the OSD process tests (each test file includes this
//! module; not every file uses every helper).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sepia_client::rados::{IoCtx, Rados};

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
