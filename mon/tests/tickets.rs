//! Session tickets expire and are renewed: with a 3 s lifetime a client
//! keeps working on one connection across several expiries (it renews
//! before each), the monitors' own links renew too (the quorum keeps
//! committing), and a session or ticket past its expiry is refused.

use std::time::{Duration, Instant};

use sepia_client::cluster::{self, UpOptions};
use sepia_client::config::Config;
use sepia_client::conn::{authenticate, fetch_service_key, renew, Conn};
use sepia_client::monc::MonClient;
use sepia_proto::auth::ticket::{build_authorizer, verify_authorizer, AuthError, ServiceKeys};
use sepia_proto::msg::{Body, Command};

/// Stopped and deleted when dropped.
use sepia_client::cluster::Guard as Cluster;

/// Short enough for several expiries in a test, long enough that a busy
/// machine's election or slow reconnect does not eat a whole lifetime.
const TTL_MS: u64 = 3000;

/// The monitors' logs, for a failure message.
fn logs(dir: &std::path::Path) -> String {
    ["a", "b", "c"].iter().map(|n| format!("--- mon.{n}\n{}", std::fs::read_to_string(dir.join("out").join(format!("mon.{n}.log"))).unwrap_or_default())).collect()
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn sessions_are_renewed_before_expiry_and_refused_after() {
    let dir = std::env::temp_dir().join(format!("sepia-tickets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("CARGO_BIN_EXE_sepia-mon", env!("CARGO_BIN_EXE_sepia-mon"));
    // Only this test binary's monitors get the short lifetime.
    std::env::set_var("SEPIA_MON_AUTH_TICKET_TTL_MS", TTL_MS.to_string());
    cluster::up(&UpOptions { dir: dir.clone(), mons: 3, osds: 0, down_out_interval_s: 600 }).expect("cluster up");
    let c = Cluster { dir };
    let conf = Config::load(&c.dir.join("sepia.conf").to_string_lossy()).unwrap();
    let secret = conf.secret_for("client.admin").unwrap().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        // One client, one session, about four lifetimes of changes.
        let mut monc = MonClient::from_conf(&conf, "client.admin").unwrap();
        let mut grants = Vec::new();
        let start = Instant::now();
        let mut i = 0;
        while start.elapsed() < Duration::from_millis(TTL_MS * 4) {
            let args: Vec<String> = ["osd", "pool", "create", &format!("p{i}"), "8"].map(String::from).to_vec();
            let r = monc.command(&args, false).await.unwrap();
            assert_eq!(r.result, 0, "change {i} at {:?}: {}", start.elapsed(), r.status);
            let g = monc.granted().expect("an authenticated session").clone();
            if std::env::var("SEPIA_TEST_TRACE").is_ok() {
                eprintln!("{:?} change {i}: session {} expires {}", start.elapsed(), g.global_id, g.expires_ms);
            }
            if grants.last().is_none_or(|(_, e): &(u64, u64)| *e != g.expires_ms) {
                grants.push((g.global_id, g.expires_ms));
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Renewed, not re-authenticated: the session kept its global id and
        // got later expiries at least three times (a redirect to a new
        // leader may start a new session; its renewals count as well), and
        // every change in between was accepted.
        let renewals = grants.windows(2).filter(|w| w[0].0 == w[1].0 && w[1].1 > w[0].1).count();
        assert!(renewals >= 3, "the session was renewed only {renewals} times: {grants:?}\n{}", logs(&c.dir));
        // The monitors' links renewed too: all three are in the quorum.
        let r = monc.command(&["quorum_status".to_string()], true).await.unwrap();
        let q: serde_json::Value = serde_json::from_str(&r.output).unwrap();
        assert_eq!(q["quorum_names"].as_array().map(|a| a.len()), Some(3), "{q}");

        // A session left to expire is refused, and cannot renew any more.
        let addr = conf.mon_addrs()[0].clone();
        let mut conn = Conn::connect(&addr, "client.admin", [0; 16]).await.unwrap();
        let first = authenticate(&mut conn, "client.admin", &secret).await.unwrap();
        let (generation, key) = fetch_service_key(&mut conn, &first.session_key, "osd").await.unwrap();
        let keys = ServiceKeys::new(generation, key);
        let ask = Body::Command(Command { tid: 1, args: vec!["osd".into(), "pool".into(), "ls".into()], json: true });
        conn.send(&ask, &[]).await.unwrap();
        let Body::CommandReply(ok) = conn.recv_body().await.unwrap().1 else { panic!("a command reply") };
        assert_eq!(ok.result, 0, "{}", ok.status);
        // Renewal while alive: a later expiry, same session key.
        let renewed = renew(&mut conn, &secret, &first.session_key).await.unwrap();
        assert!(renewed.expires_ms >= first.expires_ms && renewed.global_id == first.global_id);
        let wait = renewed.expires_ms.saturating_sub(wall_ms()) + 200;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        conn.send(&ask, &[]).await.unwrap();
        let Body::CommandReply(refused) = conn.recv_body().await.unwrap().1 else { panic!("a command reply") };
        assert_eq!(refused.result, sepia_proto::errno::Errno::Access.result(), "{refused:?}");
        assert!(refused.status.contains("expired"), "{}", refused.status);
        let late = renew(&mut conn, &secret, &first.session_key).await.unwrap_err();
        assert!(late.to_string().contains("expired"), "{late}");

        // The OSD ticket of that session: good while it lived, refused after.
        let osd_ticket = renewed.tickets.iter().find(|t| t.service == "osd").unwrap();
        let now = wall_ms();
        let during = build_authorizer(osd_ticket, &renewed.session_key, 5, 1, renewed.expires_ms - 100);
        assert!(verify_authorizer(&during, &keys, "osd", 5, renewed.expires_ms - 100, 5_000).is_ok());
        let after = build_authorizer(osd_ticket, &renewed.session_key, 5, 2, now);
        assert!(matches!(verify_authorizer(&after, &keys, "osd", 5, now, 5_000), Err(AuthError::Expired { .. })));
        // A client that renews (or re-authenticates) holds a good ticket now.
        let r = monc.command(&["osd".to_string(), "pool".to_string(), "ls".to_string()], true).await.unwrap();
        assert_eq!(r.result, 0, "{}", r.status);
        let g = monc.granted().unwrap().clone();
        let t = g.tickets.iter().find(|t| t.service == "osd").unwrap();
        let now = wall_ms();
        assert!(verify_authorizer(&build_authorizer(t, &g.session_key, 5, 3, now), &keys, "osd", 5, now, 5_000).is_ok());
    });
}
