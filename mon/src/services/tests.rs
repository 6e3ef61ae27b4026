//! The services driven as the shell would, with a log that commits at
//! once: commands, boots, failures and the clock against one leader.

use sepia_proto::monmap::MonMap;
use sepia_proto::msg::{Command, OsdBeacon, OsdBoot, OsdFailure, OsdMarkMeDown};
use sepia_proto::osdmap::OsdMap;

use super::service::{Answer, MonConfig, MonServices, QuorumInfo};
use super::state::{AuthEntry, Batch, ClusterState};

struct Harness {
    state: ClusterState,
    svc: MonServices,
    quorum: QuorumInfo,
    now: u64,
    next_waiter: u64,
    answers: Vec<Answer>,
    batches: usize,
}

impl Harness {
    fn new() -> Harness {
        let monmap = MonMap::new([5; 16], &[("a".into(), "127.0.0.1:3300".into())], 0).unwrap();
        let crush = crush_simd::edit::default_map("osd").unwrap();
        let osdmap = OsdMap::new([5; 16], crush, 0);
        let config = MonConfig { crush_location_type: "osd".into(), min_down_reporters: 1, ..MonConfig::default() };
        let mut svc = MonServices::new(1, config);
        let admin = AuthEntry { key: super::caps_check::new_key(), caps: [("mon".to_string(), "allow *".to_string())].into() };
        let entry = svc.bootstrap_entry(monmap, &osdmap, vec![("client.admin".into(), admin)]);
        let mut state = ClusterState::new();
        state.apply_entry(&entry).unwrap();
        let quorum = QuorumInfo { have_quorum: true, is_leader: true, members: vec!["a".into()], leader: Some("a".into()), election_epoch: 1, me: "a".into() };
        svc.become_leader(&state, 0);
        Harness { state, svc, quorum, now: 0, next_waiter: 1, answers: Vec::new(), batches: 0 }
    }

    /// One propose interval: flush, commit, apply.
    fn commit(&mut self) {
        if let Some(bytes) = self.svc.flush(&self.state, self.now) {
            self.batches += 1;
            let applied = self.state.apply_entry(&bytes).map(|_| ()).map_err(|e| e.to_string());
            let batch = Batch::decode(&bytes).ok();
            self.answers.extend(self.svc.on_committed(&self.state, batch.as_ref(), applied));
        }
        self.answers.extend(self.svc.take_immediate());
        self.svc.invariants(&self.state);
    }

    fn cmd(&mut self, line: &str) -> (i32, String, String) {
        let args: Vec<String> = line.split_whitespace().map(|w| w.replace('~', " ")).collect();
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        let c = Command { tid: waiter, args, json: false };
        if let Some(r) = self.svc.handle_command(&self.state, &self.quorum, &c, waiter, self.now) {
            return (r.result, r.status, r.output);
        }
        self.commit();
        let pos = self.answers.iter().position(|(w, _)| *w == waiter).expect("answered after commit");
        let (_, r) = self.answers.remove(pos);
        (r.result, r.status, r.output)
    }

    fn ok(&mut self, line: &str) -> String {
        let (code, status, out) = self.cmd(line);
        assert_eq!(code, 0, "{line}: {status}");
        out
    }

    fn boot(&mut self, osd: i32) {
        let boot = OsdBoot { osd, uuid: [osd as u8 + 1; 16], addrs: vec![format!("127.0.0.1:{}", 6800 + osd)], have_epoch: 0, hostname: "node".into() };
        let w = self.next_waiter;
        self.next_waiter += 1;
        assert!(self.svc.handle_boot(&self.state, &self.quorum, &boot, w, self.now).is_none());
        self.commit();
    }
}

#[test]
fn a_cluster_comes_up_and_serves_admin_commands() {
    let mut h = Harness::new();
    for i in 0..3 {
        assert_eq!(h.new_osd(i), i.to_string());
    }
    for i in 0..3 {
        h.boot(i);
    }
    assert!(h.state.osdmap.osds.iter().all(|o| o.up));
    assert_eq!(h.ok("osd pool create rbd 32 --size 3"), "");
    assert_eq!(h.cmd("osd pool create rbd 32").1, "pool 'rbd' already exists");
    // An option where the name goes is refused, not taken as the name.
    let (code, status, _) = h.cmd("osd pool create --help");
    assert!(code < 0 && status.contains("may not begin with '-'"), "{code} {status}");
    assert!(h.cmd("osd pool rename rbd -x").0 < 0);
    h.ok("osd pool create ecpool 16 --ec 2+1");
    let pools = h.svc_read("osd pool ls", true);
    assert_eq!(pools, r#"["rbd","ecpool"]"#);
    let tree = h.svc_read("osd tree", false);
    assert!(tree.contains("osd.2") && tree.contains("up"), "{tree}");
    let map = h.svc_read("osd map rbd test-object-1", true);
    let v: serde_json::Value = serde_json::from_str(&map).unwrap();
    assert_eq!(v["up"].as_array().unwrap().len(), 3);
    assert!(v["pgid"].as_str().unwrap().starts_with("1."));
    assert!(h.svc_read("health", false).starts_with("HEALTH_OK"), "{}", h.svc_read("health detail", false));
    let q: serde_json::Value = serde_json::from_str(&h.svc_read("quorum_status", true)).unwrap();
    assert_eq!(q["quorum_leader_name"], "a");
    assert_eq!(q["quorum_names"][0], "a");
    // Pool edits and their refusals.
    h.ok("osd pool set rbd size 2");
    assert_eq!(h.state.osdmap.pool_by_name("rbd").unwrap().size, 2);
    assert_ne!(h.cmd("osd pool set rbd min_size 5").0, 0);
    assert_ne!(h.cmd("osd pool set ecpool size 4").0, 0);
    assert_ne!(h.cmd("osd pool rm rbd").0, 0);
    h.ok("osd pool rm rbd rbd --yes-i-really-really-mean-it");
    assert!(h.state.osdmap.pool_by_name("rbd").is_none());
    // Auth.
    let keyring = h.ok("auth get-or-create client.bob mon allow~r");
    assert!(keyring.contains("[client.bob]"), "{keyring}");
    assert_eq!(h.ok("auth get-or-create client.bob"), keyring, "get-or-create is idempotent");
    assert_ne!(h.cmd("auth get-or-create client.bob osd allow~*").0, 0, "different caps are refused");
    assert_ne!(h.cmd("auth get-or-create nonsense").0, 0);
    h.ok("auth rm client.bob");
    assert!(!h.state.auth.contains_key("client.bob"));
    // CRUSH edits.
    h.ok("osd crush reweight osd.0 2.0");
    assert_eq!(h.state.osdmap.crush.item_weight(0), 0x20000);
    assert_ne!(h.cmd("osd crush rm default").0, 0);
    // Unknown commands and bad numbers are errors, not panics.
    for bad in ["osd pool create", "osd reweight 0 7", "osd reweight x 0.5", "osd in 99", "frobnicate", "osd pool set ecpool pg_num -1"] {
        assert_ne!(h.cmd(bad).0, 0, "{bad}");
    }
}

impl Harness {
    /// `osd new` with the uuid `boot` presents.
    fn new_osd(&mut self, i: i32) -> String {
        let b = format!("{:02x}", i + 1);
        let uuid = format!("{}-{}-{}-{}-{}", b.repeat(4), b.repeat(2), b.repeat(2), b.repeat(2), b.repeat(6));
        self.ok(&format!("osd new {uuid}"))
    }

    fn svc_read(&mut self, line: &str, json: bool) -> String {
        let args: Vec<String> = line.split_whitespace().map(|w| w.replace('~', " ")).collect();
        let c = Command { tid: 0, args, json };
        let r = self.svc.handle_command(&self.state, &self.quorum, &c, 0, self.now).expect("read-only");
        assert_eq!(r.result, 0, "{line}: {}", r.status);
        r.output
    }
}

#[test]
fn changes_are_batched_into_one_log_entry() {
    let mut h = Harness::new();
    let mut waiters = Vec::new();
    for i in 0..50 {
        let c = Command { tid: i, args: vec!["osd".into(), "new".into()], json: false };
        assert!(h.svc.handle_command(&h.state, &h.quorum, &c, 100 + i, 0).is_none());
        waiters.push(100 + i);
    }
    let before = h.state.osdmap.epoch;
    h.commit();
    assert_eq!(h.batches, 1);
    assert_eq!(h.state.osdmap.epoch, before + 1, "fifty changes, one epoch");
    assert_eq!(h.state.osdmap.osds.iter().filter(|o| o.exists).count(), 50);
    assert_eq!(h.answers.len(), 50);
}

#[test]
fn a_reporter_that_is_down_takes_nobody_down() {
    let mut h = Harness::new();
    h.svc.config.min_down_reporters = 1;
    for i in 0..2 {
        h.new_osd(i);
        h.boot(i);
    }
    // osd.1 says goodbye; its late report about osd.0 must not count.
    h.svc.handle_mark_me_down(&h.state, &OsdMarkMeDown { osd: 1, epoch: 0 }, h.now);
    h.commit();
    assert!(!h.state.osdmap.is_up(1));
    let epoch = h.state.osdmap.epoch;
    h.svc.handle_failure(&h.state, &OsdFailure { reporter: 1, target: 0, epoch, failed_for_ms: 6000, still_failed: true }, h.now);
    h.commit();
    assert!(h.state.osdmap.is_up(0), "a down reporter marked osd.0 down");
    // A report filed while the reporter was up lapses once it goes down.
    h.boot(1);
    h.svc.config.min_down_reporters = 2;
    for i in 2..4 {
        h.new_osd(i);
        h.boot(i);
    }
    let epoch = h.state.osdmap.epoch;
    let report = |reporter| OsdFailure { reporter, target: 0, epoch, failed_for_ms: 6000, still_failed: true };
    h.svc.handle_failure(&h.state, &report(1), h.now);
    h.commit();
    assert!(h.state.osdmap.is_up(0), "one reporter of two needed");
    h.svc.handle_mark_me_down(&h.state, &OsdMarkMeDown { osd: 1, epoch: 0 }, h.now);
    h.commit();
    h.svc.handle_failure(&h.state, &report(2), h.now);
    h.commit();
    assert!(h.state.osdmap.is_up(0), "osd.1's report outlived its going down");
    h.svc.handle_failure(&h.state, &report(3), h.now);
    h.commit();
    assert!(!h.state.osdmap.is_up(0), "two reporters that are up");
}

/// A report sent before the reporter saw its target boot again is about
/// the target's earlier life: it must not mark the restarted OSD down
/// (under kill -9 chaos, late reports from two restarted peers did).
#[test]
fn a_report_older_than_the_targets_boot_takes_nobody_down() {
    let mut h = Harness::new();
    h.svc.config.min_down_reporters = 2;
    for i in 0..3 {
        h.new_osd(i);
        h.boot(i);
    }
    let report = |reporter, epoch| OsdFailure { reporter, target: 2, epoch, failed_for_ms: 6000, still_failed: true };
    let before = h.state.osdmap.epoch;
    h.svc.handle_failure(&h.state, &report(0, before), h.now);
    h.svc.handle_failure(&h.state, &report(1, before), h.now);
    h.commit();
    assert!(!h.state.osdmap.is_up(2), "two current reports");
    // osd.2 comes back; its peers, still on older maps, keep reporting.
    h.boot(2);
    let up_from = h.state.osdmap.osd(2).unwrap().up_from;
    assert!(up_from > before);
    h.svc.handle_failure(&h.state, &report(0, up_from - 1), h.now);
    h.svc.handle_failure(&h.state, &report(1, up_from - 1), h.now);
    h.commit();
    assert!(h.state.osdmap.is_up(2), "reports about osd.2's earlier life marked it down");
    // Reports from peers that saw it boot count.
    h.svc.handle_failure(&h.state, &report(0, up_from), h.now);
    h.svc.handle_failure(&h.state, &report(1, up_from), h.now);
    h.commit();
    assert!(!h.state.osdmap.is_up(2), "two current reports after the boot");
}

#[test]
fn failures_beacons_and_down_out() {
    let mut h = Harness::new();
    h.svc.config.min_down_reporters = 2;
    for i in 0..4 {
        h.new_osd(i);
        h.boot(i);
    }
    // Two distinct reporters mark osd.3 down.
    let epoch = h.state.osdmap.epoch;
    let report = |reporter| OsdFailure { reporter, target: 3, epoch, failed_for_ms: 6000, still_failed: true };
    h.svc.handle_failure(&h.state, &report(0), h.now);
    h.commit();
    assert!(h.state.osdmap.is_up(3), "one reporter is not enough");
    h.svc.handle_failure(&h.state, &report(0), h.now);
    h.commit();
    assert!(h.state.osdmap.is_up(3), "the same reporter twice is still one");
    h.svc.handle_failure(&h.state, &report(1), h.now);
    h.commit();
    assert!(!h.state.osdmap.is_up(3));
    // Silence: osd.2 stops beaconing; others keep going.
    for step in 1..=12 {
        h.now = step * 1000;
        for osd in [0, 1] {
            h.svc.handle_beacon(&OsdBeacon { osd, epoch: h.state.osdmap.epoch, stat: Default::default() }, h.now);
        }
        h.svc.tick(&h.state, h.now);
        h.commit();
    }
    assert!(!h.state.osdmap.is_up(2), "no beacon for 12 s > 10 s grace");
    assert!(h.state.osdmap.is_up(0) && h.state.osdmap.is_up(1));
    // A clean goodbye.
    h.svc.handle_mark_me_down(&h.state, &OsdMarkMeDown { osd: 1, epoch: 0 }, h.now);
    h.commit();
    assert!(!h.state.osdmap.is_up(1));
    // Down long enough → out; boots again → in.
    h.now += 700_000;
    h.svc.handle_beacon(&OsdBeacon { osd: 0, epoch: 0, stat: Default::default() }, h.now);
    h.svc.tick(&h.state, h.now);
    h.commit();
    assert_eq!(h.state.osdmap.osds[3].weight, 0);
    h.boot(3);
    assert!(h.state.osdmap.is_up(3));
    assert_eq!(h.state.osdmap.osds[3].weight, 0x10000, "auto-out OSDs come back in");
}

#[test]
fn osd_lost_marks_a_down_osd_lost_in_the_new_epoch() {
    use sepia_proto::errno::Errno;
    let mut h = Harness::new();
    for i in 0..3 {
        h.new_osd(i);
        h.boot(i);
    }
    // Without the flag: EPERM, saying what it would do; nothing changes.
    let epoch = h.state.osdmap.epoch;
    let (code, status, _) = h.cmd("osd lost 1");
    assert_eq!(code, Errno::Perm.result(), "{status}");
    assert!(status.contains("--yes-i-really-mean-it") && status.contains("osd.1") && status.contains("data loss"), "{status}");
    // An OSD that does not exist, or is up: ENOENT, EBUSY.
    let (code, status, _) = h.cmd("osd lost 7 --yes-i-really-mean-it");
    assert_eq!(code, Errno::NoEnt.result(), "{status}");
    assert!(status.contains("osd.7 does not exist"), "{status}");
    let (code, status, _) = h.cmd("osd lost osd.1 --yes-i-really-mean-it");
    assert_eq!(code, Errno::Busy.result(), "{status}");
    assert!(status.contains("osd.1 is not down"), "{status}");
    // Malformed: EINVAL.
    for bad in ["osd lost", "osd lost 1 2 --yes-i-really-mean-it", "osd lost x --yes-i-really-mean-it", "osd lost 1 --force"] {
        assert_eq!(h.cmd(bad).0, Errno::Inval.result(), "{bad}");
    }
    assert_eq!(h.state.osdmap.epoch, epoch, "refusals change nothing");
    assert!(h.state.osdmap.osds.iter().all(|o| o.lost_at == 0));
    // Down, then lost: the new map has lost_at = its own epoch.
    h.ok("osd down 1");
    let down_epoch = h.state.osdmap.epoch;
    let (code, status, _) = h.cmd("osd lost osd.1 --yes-i-really-mean-it");
    assert_eq!(code, 0, "{status}");
    let lost_epoch = h.state.osdmap.epoch;
    assert_eq!(lost_epoch, down_epoch + 1);
    assert_eq!(status, format!("marked osd lost in epoch {lost_epoch}"));
    assert_eq!(h.state.osdmap.osds[1].lost_at, lost_epoch);
    assert!(h.state.osdmap.osds.iter().filter(|o| o.id != 1).all(|o| o.lost_at == 0));
    // The flag may come first, as the words arrive.
    h.ok("osd down 2");
    h.ok("osd lost --yes-i-really-mean-it 2");
    assert_eq!(h.state.osdmap.osds[2].lost_at, h.state.osdmap.epoch);
    // `osd dump` shows it, as Ceph does.
    let dump: serde_json::Value = serde_json::from_str(&h.svc_read("osd dump", true)).unwrap();
    let osd1 = dump["osds"].as_array().unwrap().iter().find(|o| o["osd"] == 1).unwrap();
    assert_eq!(osd1["lost_at"], lost_epoch);
    let osd0 = dump["osds"].as_array().unwrap().iter().find(|o| o["osd"] == 0).unwrap();
    assert_eq!(osd0["lost_at"], 0);
    let plain = h.svc_read("osd dump", false);
    assert!(plain.lines().any(|l| l.starts_with("osd.1 ") && l.contains(&format!("lost_at {lost_epoch}"))), "{plain}");
    assert!(plain.lines().any(|l| l.starts_with("osd.0 ") && !l.contains("lost_at")), "{plain}");
    // Booting again does not clear it (peering compares epochs).
    h.boot(1);
    assert!(h.state.osdmap.is_up(1));
    assert_eq!(h.state.osdmap.osds[1].lost_at, lost_epoch);
    assert!(h.state.osdmap.osds[1].up_from > lost_epoch);
}

#[test]
fn non_leaders_and_minorities_refuse_changes() {
    let mut h = Harness::new();
    h.quorum.is_leader = false;
    h.svc.lose_leadership();
    let (code, status, _) = h.cmd("osd new");
    assert_eq!(code, -11);
    assert!(status.contains("leader is mon.a"), "{status}");
    // Reads still work in the quorum.
    assert!(h.svc_read("osd dump", false).contains("epoch"));
    h.quorum.have_quorum = false;
    let (code, status, _) = h.cmd("osd dump");
    assert_eq!(code, -11, "no quorum: not even reads ({status})");
}

#[test]
fn leadership_loss_fails_waiters() {
    let mut h = Harness::new();
    let c = Command { tid: 9, args: vec!["osd".into(), "new".into()], json: false };
    assert!(h.svc.handle_command(&h.state, &h.quorum, &c, 77, 0).is_none());
    let proposed = h.svc.flush(&h.state, 0);
    assert!(proposed.is_some());
    let failed = h.svc.lose_leadership();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 77);
    assert_eq!(failed[0].1.result, -11);
}

#[test]
fn subscribers_get_incrementals_or_a_full_map() {
    let mut h = Harness::new();
    let mut subscriber = h.state.osdmap.clone();
    for i in 0..5 {
        h.new_osd(i);
    }
    h.boot(2);
    let newest = h.state.osdmap.epoch;
    let d = h.state.osdmap_delivery(newest - 2);
    assert!(d.full.is_none());
    assert_eq!(d.incrementals.len(), 2);
    // A subscriber at epoch 1 catches up through every incremental.
    let d = h.state.osdmap_delivery(subscriber.epoch);
    assert!(d.full.is_none());
    for inc in &d.incrementals {
        subscriber.apply(inc).unwrap();
    }
    assert_eq!(subscriber, h.state.osdmap);
    // One with nothing gets the full map.
    let d0 = h.state.osdmap_delivery(0);
    assert_eq!(OsdMap::from_wire(d0.full.as_ref().unwrap()).unwrap(), h.state.osdmap);
    assert!(h.state.osdmap_delivery(newest).incrementals.is_empty());
    // Snapshots restore the same state.
    let snap = h.state.snapshot();
    assert_eq!(ClusterState::restore(&snap).unwrap(), h.state);
    assert!(ClusterState::restore(&snap[..snap.len() / 2]).is_err());
}

use proptest::strategy::Strategy;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Any words, from anyone: an answer or a refusal, never a panic, and
    /// the invariants hold afterwards.
    #[test]
    fn arbitrary_commands_never_panic(words in proptest::collection::vec(
        proptest::prop_oneof![
            proptest::sample::select(vec!["osd", "pool", "create", "rm", "set", "get", "crush", "add", "move", "reweight",
                "auth", "get-or-create", "caps", "mon", "new", "in", "out", "down", "tree", "dump", "ls", "map", "rbd",
                "size", "min_size", "pg_num", "pgp_num", "crush_rule", "--size", "--ec", "--min-size", "host=a", "root=default",
                "osd.0", "osd.1", "client.x", "allow *", "0", "1", "3", "-1", "2+1", "0.5", "99999999999", "set-quota", "max_bytes",
                "noout", "setcrushmap", "--yes-i-really-really-mean-it", "lost", "--yes-i-really-mean-it", "health", "status", "quorum_status", "add-bucket", "rack"])
                .prop_map(String::from),
            "[ -~]{0,12}",
        ], 0..7)) {
        let mut h = Harness::new();
        h.new_osd(0);
        h.boot(0);
        for json in [false, true] {
            let c = Command { tid: 1, args: words.clone(), json };
            let w = h.next_waiter;
            h.next_waiter += 1;
            let _ = h.svc.handle_command(&h.state, &h.quorum, &c, w, h.now);
            h.commit();
            h.state.osdmap.crush.invariants();
        }
    }
}

#[test]
fn one_membership_change_per_log_entry() {
    let mut h = Harness::new();
    let ask = |h: &mut Harness, line: &str, waiter: u64| {
        let c = Command { tid: waiter, args: line.split_whitespace().map(String::from).collect(), json: false };
        h.svc.handle_command(&h.state, &h.quorum, &c, waiter, h.now)
    };
    // Queued, not yet proposed: a second change must wait for the next entry.
    assert!(ask(&mut h, "mon add b 127.0.0.1:3301", 100).is_none());
    let second = ask(&mut h, "mon rm b", 101).expect("refused at once");
    assert_eq!(second.result, sepia_proto::errno::Errno::Again.result(), "{second:?}");
    h.commit();
    assert_eq!(h.state.monmap.mons.len(), 2);
    assert_eq!(h.state.mon_ids.get("b"), Some(&2));
    assert_eq!(h.state.mon_config, 2);
    // Removed and added back: a new node id.
    h.ok("mon rm b");
    h.ok("mon add b 127.0.0.1:3302");
    assert_eq!(h.state.mon_ids.get("b"), Some(&3));
    assert_eq!(h.state.mon_config, 4);
}

#[test]
fn osd_new_with_a_key_creates_the_osd_entity_with_ceph_caps() {
    let mut h = Harness::new();
    let key = super::caps_check::new_key();
    let uuid = "11111111-2222-3333-4444-555555555555";
    let params = format!("{{\"cephx_secret\":\"{key}\"}}");
    assert_eq!(h.ok(&format!("osd new {uuid} 3 {params}")), "3");
    let e = h.state.auth.get("osd.3").expect("osd.3 created with the OSD");
    assert_eq!(e.key, key);
    assert_eq!(e.caps.get("mon").map(String::as_str), Some("allow profile osd"));
    assert_eq!(e.caps.get("osd").map(String::as_str), Some("allow *"));
    assert!(h.state.osdmap.osd(3).is_some());
    // Idempotent with the same uuid and key; another key is refused.
    assert_eq!(h.ok(&format!("osd new {uuid} 3 {params}")), "3");
    let other = format!("{{\"cephx_secret\":\"{}\"}}", super::caps_check::new_key());
    let (code, status, _) = h.cmd(&format!("osd new {uuid} 3 {other}"));
    assert_eq!(code, -17, "{status}");
    assert_eq!(h.state.auth.get("osd.3").unwrap().key, key, "the key did not change");
    // An existing entity with another key blocks a new OSD of that id.
    h.ok("auth get-or-create osd.4 mon allow~profile~osd");
    let (code, _, _) = h.cmd(&format!("osd new 11111111-2222-3333-4444-666666666666 4 {params}"));
    assert_eq!(code, -17);
    assert!(h.state.osdmap.osd(4).is_none(), "nothing created");
    // Bad parameters are errors.
    for bad in ["{\"cephx_secret\":\"nonsense\"}", "{\"dmcrypt_key\":\"x\"}", "{not-json"] {
        assert_ne!(h.cmd(&format!("osd new 11111111-2222-3333-4444-777777777777 5 {bad}")).0, 0, "{bad}");
    }
    // Without parameters no entity is made.
    h.ok("osd new 11111111-2222-3333-4444-888888888888 6");
    assert!(!h.state.auth.contains_key("osd.6"));
}
