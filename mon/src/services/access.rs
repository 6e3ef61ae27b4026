//! Who may ask the monitors what: an authenticated entity's mon caps
//! checked against one request (Ceph's MonCap, the part Sepia has).
//!
//! - `allow ...` grants: reads need `r`, changes `rw`; service keys need
//!   `allow *` (or `rwx`).
//! - `profile osd` (Ceph's OSD profile): an `osd.N` entity may read the
//!   maps and the cluster status, subscribe, boot, send beacons, mark
//!   itself down and report failed peers — all as `N` only — and fetch the
//!   OSD service key. It may not change anything by command (pools, CRUSH,
//!   auth, membership), read the auth database (it holds every key),
//!   speak for another OSD, or talk Paxos.
//! - `profile mon|mgr|admin`: everything (daemons, administrators).
//! - other profiles (`client`, `rbd`, `rbd-read-only`): reads.
//!
//! Invariants: sans-IO; a caps string that does not parse allows nothing;
//! a refusal says who asked for what and why.

use sepia_proto::auth::caps::{Caps, Grant, Perm};
use sepia_proto::auth::entity::{EntityName, EntityType};
use sepia_proto::msg::Body;
use sepia_proto::osdmap::OsdId;

use super::command::is_read_only;

/// An authenticated connection: its entity and the entity's mon caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub entity: String,
    pub mon_caps: String,
}

impl Identity {
    /// The OSD id of an `osd.N` entity.
    fn osd_id(&self) -> Option<OsdId> {
        let name = EntityName::parse(&self.entity).ok()?;
        if name.kind != EntityType::Osd {
            return None;
        }
        name.id.parse::<OsdId>().ok().filter(|id| *id >= 0)
    }
}

/// May `who` (None: not authenticated) send `body`? `Err` is the reason
/// for the `-EACCES` answer.
pub fn check(auth_required: bool, who: Option<&Identity>, body: &Body) -> Result<(), String> {
    let Some(who) = who else {
        return if auth_required { Err("authentication required".into()) } else { Ok(()) };
    };
    let caps = Caps::parse(&who.mon_caps).map_err(|e| format!("access denied: {} has unusable mon caps: {e}", who.entity))?;
    let osd = who.osd_id();
    if caps.grants.iter().any(|g| grant_allows(g, osd, body)) {
        return Ok(());
    }
    Err(format!("access denied: {} (mon caps '{}') may not {}", who.entity, who.mon_caps, describe(body)))
}

/// May `who` have the ticket key of `service` (daemons verify tickets
/// with it)?
pub fn may_fetch_service_key(who: &Identity, service: &str) -> bool {
    let Ok(caps) = Caps::parse(&who.mon_caps) else { return false };
    caps.grants.iter().any(|g| match g {
        Grant::Profile { name, .. } if name == "osd" => service == "osd" && who.osd_id().is_some(),
        Grant::Profile { name, .. } => matches!(name.as_str(), "mon" | "mgr" | "admin"),
        g @ Grant::Allow { .. } => Caps { grants: vec![g.clone()] }.allows("mon", None, "", "", Perm::ALL),
    })
}

fn read_only(body: &Body) -> bool {
    match body {
        Body::Command(c) => is_read_only(&c.args),
        Body::Subscribe(_) | Body::Ping(_) => true,
        _ => false,
    }
}

fn grant_allows(g: &Grant, osd: Option<OsdId>, body: &Body) -> bool {
    match g {
        Grant::Profile { name, .. } if name == "osd" => osd_profile_allows(osd, body),
        g => {
            let need = if read_only(body) { Perm::READ } else { Perm { r: true, w: true, x: false } };
            Caps { grants: vec![g.clone()] }.allows("mon", None, "", "", need)
        }
    }
}

/// Ceph's `profile osd` on the monitor: map reads and the OSD's own
/// lifecycle messages, nothing else.
fn osd_profile_allows(osd: Option<OsdId>, body: &Body) -> bool {
    let Some(me) = osd else { return false };
    match body {
        Body::Command(c) => is_read_only(&c.args) && c.args.first().is_none_or(|w| w != "auth"),
        Body::Subscribe(_) | Body::Ping(_) => true,
        Body::OsdBoot(b) => b.osd == me,
        Body::OsdBeacon(b) => b.osd == me,
        Body::OsdFailure(f) => f.reporter == me,
        Body::OsdMarkMeDown(m) => m.osd == me,
        _ => false,
    }
}

/// What a request asks for, for a refusal message.
fn describe(body: &Body) -> String {
    match body {
        Body::Command(c) => {
            let mut words: Vec<&str> = c.args.iter().take(4).map(String::as_str).collect();
            if c.args.len() > 4 {
                words.push("...");
            }
            format!("run '{}'", words.join(" "))
        }
        Body::OsdBoot(b) => format!("boot osd.{}", b.osd),
        Body::OsdBeacon(b) => format!("send beacons for osd.{}", b.osd),
        Body::OsdFailure(f) => format!("report failures as osd.{}", f.reporter),
        Body::OsdMarkMeDown(m) => format!("mark osd.{} down", m.osd),
        Body::MonPaxos(_) => "take part in the monitors' Paxos".into(),
        other => format!("send {}", sepia_proto::msg::type_name(other.msg_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sepia_proto::msg::{Command, OsdBeacon, OsdBoot, OsdFailure, OsdMarkMeDown, OsdStat, Subscribe};

    fn who(entity: &str, caps: &str) -> Identity {
        Identity { entity: entity.into(), mon_caps: caps.into() }
    }

    fn cmd(line: &str) -> Body {
        Body::Command(Command { tid: 1, args: line.split_whitespace().map(String::from).collect(), json: false })
    }

    fn boot(osd: OsdId) -> Body {
        Body::OsdBoot(OsdBoot { osd, uuid: [1; 16], addrs: vec!["127.0.0.1:1".into()], have_epoch: 0, hostname: String::new() })
    }

    #[test]
    fn profile_osd_allows_its_own_lifecycle_and_map_reads_only() {
        let osd1 = who("osd.1", "allow profile osd");
        for ok in [
            boot(1),
            Body::OsdBeacon(OsdBeacon { osd: 1, epoch: 3, stat: OsdStat::default() }),
            Body::OsdFailure(OsdFailure { reporter: 1, target: 2, epoch: 3, failed_for_ms: 10, still_failed: true }),
            Body::OsdMarkMeDown(OsdMarkMeDown { osd: 1, epoch: 3 }),
            Body::Subscribe(Subscribe { items: vec![] }),
            cmd("osd dump"),
            cmd("status"),
        ] {
            assert_eq!(check(true, Some(&osd1), &ok), Ok(()), "{ok:?}");
        }
        for (bad, why) in [
            (boot(2), "boot osd.2"),
            (Body::OsdBeacon(OsdBeacon { osd: 0, epoch: 3, stat: OsdStat::default() }), "beacons for osd.0"),
            (Body::OsdFailure(OsdFailure { reporter: 2, target: 1, epoch: 3, failed_for_ms: 10, still_failed: true }), "as osd.2"),
            (Body::OsdMarkMeDown(OsdMarkMeDown { osd: 0, epoch: 3 }), "osd.0 down"),
            (cmd("osd pool create rbd 8"), "osd pool create"),
            (cmd("auth get-or-create client.x mon allow~*"), "auth get-or-create"),
            (cmd("auth get client.admin"), "auth get"),
            (cmd("auth ls"), "auth ls"),
            (cmd("osd new"), "osd new"),
            (cmd("mon add d 127.0.0.1:1"), "mon add"),
            (cmd("osd out 2"), "osd out"),
            (Body::MonPaxos(sepia_proto::msg::MonPaxos { from: 0, bytes: vec![] }), "Paxos"),
        ] {
            let e = check(true, Some(&osd1), &bad).expect_err(why);
            assert!(e.contains("access denied") && e.contains("osd.1") && e.contains(why), "{e}");
        }
        // The profile binds to an osd.N entity: a client with it gets nothing.
        assert!(check(true, Some(&who("client.x", "allow profile osd")), &boot(1)).is_err());
        assert!(check(true, Some(&who("client.x", "allow profile osd")), &cmd("osd dump")).is_err());
    }

    #[test]
    fn allow_grants_keep_their_meaning() {
        let admin = who("client.admin", "allow *");
        for b in [cmd("osd pool create rbd 8"), cmd("auth ls"), boot(7)] {
            assert_eq!(check(true, Some(&admin), &b), Ok(()));
        }
        let ro = who("client.ro", "allow r");
        assert_eq!(check(true, Some(&ro), &cmd("osd dump")), Ok(()));
        assert!(check(true, Some(&ro), &cmd("osd pool create rbd 8")).is_err());
        assert!(check(true, Some(&ro), &boot(0)).is_err());
        assert!(check(true, None, &cmd("osd dump")).is_err());
        assert_eq!(check(false, None, &cmd("osd pool create rbd 8")), Ok(()));
        assert!(check(true, Some(&who("client.x", "garbage caps")), &cmd("osd dump")).is_err());
    }

    #[test]
    fn service_keys_go_to_daemons_for_their_service() {
        assert!(may_fetch_service_key(&who("client.admin", "allow *"), "mon"));
        assert!(may_fetch_service_key(&who("osd.3", "allow profile osd"), "osd"));
        assert!(!may_fetch_service_key(&who("osd.3", "allow profile osd"), "mon"));
        assert!(!may_fetch_service_key(&who("client.x", "allow profile osd"), "osd"));
        assert!(!may_fetch_service_key(&who("client.ro", "allow r"), "osd"));
    }
}
