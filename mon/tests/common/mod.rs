//! Helpers shared by the monitor process tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use sepia_client::config::Config;
use sepia_client::conn::{authenticate, Conn};
use sepia_proto::msg::{Body, Command, CommandReply};

/// One command to the monitor at `addr`, one attempt.
pub async fn ask(conf: &Config, addr: &str, line: &str, json: bool) -> Result<CommandReply, String> {
    let secret = conf.secret_for("client.admin")?.ok_or("no admin key")?;
    let attempt = async {
        let mut c = Conn::connect(addr, "client.admin", [0; 16]).await.map_err(|e| e.to_string())?;
        authenticate(&mut c, "client.admin", &secret).await.map_err(|e| e.to_string())?;
        let args = line.split_whitespace().map(String::from).collect();
        c.send(&Body::Command(Command { tid: 1, args, json }), &[]).await.map_err(|e| e.to_string())?;
        match c.recv_body().await.map_err(|e| e.to_string())?.1 {
            Body::CommandReply(r) => Ok(r),
            other => Err(format!("unexpected {other:?}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.map_err(|_| "timed out".to_string())?
}

pub async fn wait_for_pools(conf: &Config, addr: &str, want: &[String], within: Duration) {
    let start = Instant::now();
    loop {
        // What the monitor said last, for the failure message.
        let seen = match ask(conf, addr, "osd pool ls", true).await {
            Ok(r) => match serde_json::from_str::<Vec<String>>(&r.output) {
                Ok(have) => {
                    let missing: Vec<&String> = want.iter().filter(|p| !have.contains(p)).collect();
                    if missing.is_empty() {
                        return;
                    }
                    format!("missing {missing:?}")
                }
                Err(_) => format!("reply {} {:?}", r.result, r.output),
            },
            Err(e) => e,
        };
        assert!(start.elapsed() < within, "the monitor at {addr} never showed all {} pools; last: {seen}", want.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("out").join(format!("mon.{name}.log"))).unwrap_or_default()
}

pub fn wait_for_log(dir: &Path, name: &str, what: &str, within: Duration) {
    let start = Instant::now();
    while !log_of(dir, name).contains(what) {
        assert!(start.elapsed() < within, "mon.{name} never logged '{what}':\n{}", log_of(dir, name));
        std::thread::sleep(Duration::from_millis(100));
    }
}
