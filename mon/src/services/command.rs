//! Admin commands (`sepia osd pool create rbd 32`, ...): read-only ones
//! answer from the committed state; changing ones edit the leader's
//! [`Pending`] state, to be proposed in the next batch.
//!
//! Every word comes from the network: counts, numbers and names are
//! checked and a bad command is a `CmdError` with an errno and a message,
//! never a panic.

use std::collections::BTreeMap;

use crush_simd::edit::{parse_location, EditError};
use crush_simd::model::{Rule, Step, RULE_TYPE_ERASURE};
use sepia_proto::errno::Errno;
use sepia_proto::monmap::MonMap;
use sepia_proto::msg::OsdBoot;
use sepia_proto::osdmap::{OsdId, OsdInfo, OsdMap, Pool, PoolKind, OSD_IN, OSD_OUT, POOL_FLAG_HASHPSPOOL};

use super::format;
use super::service::{MonConfig, QuorumInfo};
use super::state::{AuthEntry, ClusterState, Tx};

/// OSDMap flags (`sepia osd set noout`).
pub const FLAG_NOOUT: u64 = 1 << 8;
pub const FLAG_NODOWN: u64 = 1 << 9;
pub const FLAG_NOUP: u64 = 1 << 10;
pub const MAP_FLAGS: [(&str, u64); 3] = [("noout", FLAG_NOOUT), ("nodown", FLAG_NODOWN), ("noup", FLAG_NOUP)];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdError {
    pub errno: Errno,
    pub message: String,
}

fn err(errno: Errno, message: impl Into<String>) -> CmdError {
    CmdError { errno, message: message.into() }
}

fn inval(message: impl Into<String>) -> CmdError {
    err(Errno::Inval, message)
}

impl From<EditError> for CmdError {
    fn from(e: EditError) -> Self {
        let errno = match e {
            EditError::NoSuchItem(_) | EditError::NoSuchType(_) => Errno::NoEnt,
            EditError::Exists(_) => Errno::Exist,
            EditError::NotEmpty(_) => Errno::NotEmpty,
            _ => Errno::Inval,
        };
        err(errno, e.to_string())
    }
}

/// The leader's next state: the committed maps plus accepted changes.
pub struct Pending {
    pub osdmap: OsdMap,
    pub osd_dirty: bool,
    pub monmap: Option<MonMap>,
    base_monmap: MonMap,
    /// The auth database as it will be after `auth_txs`.
    pub auth: BTreeMap<String, AuthEntry>,
    pub auth_txs: Vec<Tx>,
}

impl Pending {
    pub fn new(base: &OsdMap, monmap: &MonMap, auth: &BTreeMap<String, AuthEntry>) -> Pending {
        let mut osdmap = base.clone();
        osdmap.epoch += 1;
        Pending { osdmap, osd_dirty: false, monmap: None, base_monmap: monmap.clone(), auth: auth.clone(), auth_txs: Vec::new() }
    }

    fn monmap(&self) -> &MonMap {
        self.monmap.as_ref().unwrap_or(&self.base_monmap)
    }
}

fn words(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// True for commands any monitor in the quorum answers from its state.
pub fn is_read_only(args: &[String]) -> bool {
    let w = words(args);
    matches!(
        w.as_slice(),
        ["status" | "-s" | "health" | "quorum_status" | "fsid", ..]
            | ["mon", "dump" | "stat" | "paxos", ..]
            | ["osd", "dump" | "tree" | "ls" | "stat" | "getcrushmap" | "map" | "find", ..]
            | ["osd", "crush", "dump" | "tree", ..]
            | ["osd", "pool", "ls" | "get" | "get-quota" | "stats", ..]
            | ["auth", "get" | "ls" | "list" | "print-key" | "print_key", ..]
    )
}

fn parse_num<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, CmdError> {
    s.parse().map_err(|_| inval(format!("{what}: '{s}' is not a valid number")))
}

fn parse_osd_id(s: &str) -> Result<OsdId, CmdError> {
    let digits = s.strip_prefix("osd.").unwrap_or(s);
    let id: OsdId = parse_num("osd id", digits)?;
    if id < 0 {
        return Err(inval(format!("osd id {id} is negative")));
    }
    Ok(id)
}

/// `0.5` → 0x8000 (16.16 fixed point), bounded.
fn parse_weight(s: &str, max: f64) -> Result<u32, CmdError> {
    let w: f64 = parse_num("weight", s)?;
    if !(0.0..=max).contains(&w) || !w.is_finite() {
        return Err(inval(format!("weight {s} is outside 0..={max}")));
    }
    Ok((w * 65536.0).round() as u32)
}

fn pool_by_name<'m>(map: &'m OsdMap, name: &str) -> Result<&'m Pool, CmdError> {
    map.pool_by_name(name).ok_or_else(|| err(Errno::NoEnt, format!("unrecognized pool '{name}'")))
}

fn osd_exists(map: &OsdMap, id: OsdId) -> Result<(), CmdError> {
    map.osd(id).map(|_| ()).ok_or_else(|| err(Errno::NoEnt, format!("osd.{id} does not exist")))
}

/// A read-only command against the committed state.
pub fn read(state: &ClusterState, quorum: &QuorumInfo, config: &MonConfig, args: &[String], json: bool) -> Result<String, CmdError> {
    let map = &state.osdmap;
    let w = words(args);
    match w.as_slice() {
        ["status" | "-s"] => Ok(format::status(state, quorum, config, json)),
        ["health"] => Ok(format::health(state, quorum, json, false)),
        ["health", "detail"] => Ok(format::health(state, quorum, json, true)),
        ["quorum_status"] => Ok(format::quorum_status(state, quorum)),
        ["fsid"] => Ok(format::uuid(&state.fsid())),
        ["mon", "dump"] => Ok(format::mon_dump(&state.monmap, json)),
        ["mon", "stat"] => Ok(format::mon_stat(&state.monmap, quorum)),
        // What a monitor joining the quorum needs: the configuration and
        // every member's Paxos node id.
        ["mon", "paxos"] => {
            let members: Vec<serde_json::Value> =
                state.mon_ids_for(&state.monmap).into_iter().map(|(id, m)| serde_json::json!({ "name": m.name, "addr": m.addr, "id": id })).collect();
            Ok(serde_json::json!({ "config_id": state.mon_config, "members": members }).to_string())
        }
        ["osd", "dump"] => Ok(format::osd_dump(map, json)),
        ["osd", "tree"] | ["osd", "crush", "tree"] => Ok(format::osd_tree(map, json)),
        ["osd", "ls"] => Ok(format::osd_ls(map, json)),
        ["osd", "stat"] => Ok(format::osd_stat(map, json)),
        ["osd", "getcrushmap"] | ["osd", "crush", "dump"] => Ok(crush_simd::text::print(&map.crush)),
        ["osd", "map", pool, object] => format::osd_map(map, pool_by_name(map, pool)?, object, "", json),
        ["osd", "map", pool, object, ns] => format::osd_map(map, pool_by_name(map, pool)?, object, ns, json),
        ["osd", "find", id] => {
            let id = parse_osd_id(id)?;
            osd_exists(map, id)?;
            Ok(format::osd_find(map, id))
        }
        ["osd", "pool", "ls"] => Ok(format::pool_ls(map, json, false)),
        ["osd", "pool", "ls", "detail"] => Ok(format::pool_ls(map, json, true)),
        ["osd", "pool", "get", pool, key] => format::pool_get(pool_by_name(map, pool)?, map, key, json),
        ["osd", "pool", "get-quota", pool] => Ok(format::pool_quota(pool_by_name(map, pool)?, json)),
        ["auth", "get", entity] => {
            let e = state.auth.get(*entity).ok_or_else(|| err(Errno::NoEnt, format!("failed to find {entity} in keyring")))?;
            Ok(format::keyring_entry(entity, e, json))
        }
        ["auth", "print-key" | "print_key", entity] => {
            let e = state.auth.get(*entity).ok_or_else(|| err(Errno::NoEnt, format!("don't have {entity}")))?;
            Ok(e.key.clone())
        }
        ["auth", "ls" | "list"] => Ok(format::auth_ls(&state.auth, json)),
        _ => Err(inval(format!("unknown or malformed command: {}", args.join(" ")))),
    }
}

/// A changing command against the leader's pending state. Returns the
/// status line and output to send once the change commits.
pub fn write(p: &mut Pending, config: &MonConfig, args: &[String], json: bool, now_ms: u64) -> Result<(String, String), CmdError> {
    let w = words(args);
    match w.as_slice() {
        ["osd", "new", rest @ ..] => osd_new(p, rest, json),
        ["osd", "rm" | "purge", ids @ ..] if !ids.is_empty() => {
            for id in ids {
                let id = parse_osd_id(id)?;
                osd_exists(&p.osdmap, id)?;
                if p.osdmap.is_up(id) {
                    return Err(err(Errno::Busy, format!("osd.{id} is still up; must be down before removal")));
                }
            }
            let mut done = Vec::new();
            for id in ids {
                let id = parse_osd_id(id)?;
                let name = format!("osd.{id}");
                if p.osdmap.crush.item_id(&name).is_some() {
                    p.osdmap.crush.remove_item(&name)?;
                }
                let o = &mut p.osdmap.osds[id as usize];
                *o = OsdInfo { id, uuid: [0; 16], exists: false, up: false, weight: OSD_OUT, addrs: vec![], up_from: 0, down_at: 0, lost_at: 0 };
                if p.auth.remove(&name).is_some() {
                    p.auth_txs.push(Tx::AuthRm { entity: name.clone() });
                }
                done.push(name);
            }
            p.osd_dirty = true;
            Ok((format!("removed {}", done.join(", ")), String::new()))
        }
        ["osd", verb @ ("in" | "out" | "down"), ids @ ..] if !ids.is_empty() => {
            let mut changed = Vec::new();
            for id in ids {
                let id = parse_osd_id(id)?;
                osd_exists(&p.osdmap, id)?;
                let epoch = p.osdmap.epoch;
                let o = &mut p.osdmap.osds[id as usize];
                match *verb {
                    "in" => o.weight = OSD_IN,
                    "out" => o.weight = OSD_OUT,
                    _ => {
                        if o.up {
                            o.up = false;
                            o.down_at = epoch;
                        }
                    }
                }
                changed.push(format!("osd.{id}"));
            }
            p.osd_dirty = true;
            let past = match *verb {
                "in" => "marked in",
                "out" => "marked out",
                _ => "marked down",
            };
            Ok((format!("{past} {}. ", changed.join(", ")), String::new()))
        }
        ["osd", "lost", rest @ ..] => osd_lost(p, rest),
        ["osd", "reweight", id, weight] => {
            let id = parse_osd_id(id)?;
            osd_exists(&p.osdmap, id)?;
            let w = parse_weight(weight, 1.0)?;
            p.osdmap.osds[id as usize].weight = w;
            p.osd_dirty = true;
            Ok((format!("reweighted osd.{id} to {weight} ({w:x})"), String::new()))
        }
        ["osd", set @ ("set" | "unset"), flag] => {
            let bit = MAP_FLAGS.iter().find(|(n, _)| n == flag).map(|(_, b)| *b).ok_or_else(|| inval(format!("unknown flag {flag}")))?;
            if *set == "set" {
                p.osdmap.flags |= bit;
            } else {
                p.osdmap.flags &= !bit;
            }
            p.osd_dirty = true;
            Ok((format!("{flag} is {}", if *set == "set" { "set" } else { "unset" }), String::new()))
        }
        ["osd", "crush", verb @ ("add" | "set" | "create-or-move"), name, weight, loc @ ..] => {
            let id = parse_osd_id(name)?;
            osd_exists(&p.osdmap, id)?;
            let w = parse_weight(weight, 65535.0)?;
            let location = parse_location(&loc.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
            let name = format!("osd.{id}");
            let existing = p.osdmap.crush.item_id(&name).is_some();
            if *verb == "create-or-move" && existing {
                p.osdmap.crush.move_item(&name, &location)?;
            } else {
                p.osdmap.crush.add_or_move_device(id, &name, w, &location, None)?;
            }
            p.osd_dirty = true;
            Ok((format!("{verb} item id {id} name '{name}' weight {weight} at location {{{}}} to crush map", loc.join(",")), String::new()))
        }
        ["osd", "crush", "add-bucket", name, type_name, loc @ ..] => {
            let mut location = vec![(type_name.to_string(), name.to_string())];
            location.extend(parse_location(&loc.iter().map(|s| s.to_string()).collect::<Vec<_>>())?);
            if p.osdmap.crush.item_id(name).is_some() {
                return Err(err(Errno::Exist, format!("item {name} exists")));
            }
            // Creating a bucket = placing an empty location.
            let mut crush = p.osdmap.crush.clone();
            crush_add_bucket(&mut crush, &location)?;
            p.osdmap.crush = crush;
            p.osd_dirty = true;
            Ok((format!("added bucket {name} type {type_name} to crush map"), String::new()))
        }
        ["osd", "crush", "move", name, loc @ ..] if !loc.is_empty() => {
            let location = parse_location(&loc.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
            p.osdmap.crush.move_item(name, &location)?;
            p.osd_dirty = true;
            Ok((format!("moved item '{name}' to location {{{}}} in crush map", loc.join(",")), String::new()))
        }
        ["osd", "crush", "rm" | "remove" | "unlink", name] => {
            p.osdmap.crush.remove_item(name)?;
            p.osd_dirty = true;
            Ok((format!("removed item '{name}' from crush map"), String::new()))
        }
        ["osd", "crush", "reweight", name, weight] => {
            let w = parse_weight(weight, 65535.0)?;
            p.osdmap.crush.reweight_device(name, w)?;
            p.osd_dirty = true;
            Ok((format!("reweighted item '{name}' to {weight} in crush map"), String::new()))
        }
        ["osd", "setcrushmap" | "crush-set-map", text] | ["osd", "crush", "set-map", text] => {
            let crush = crush_simd::text::parse(text).map_err(|e| inval(format!("bad crush map: {e}")))?;
            for pool in p.osdmap.pools.values() {
                if crush.rule(pool.crush_rule).is_none() {
                    return Err(inval(format!("pool '{}' uses crush rule {} which the new map lacks", pool.name, pool.crush_rule)));
                }
            }
            p.osdmap.crush = crush;
            p.osd_dirty = true;
            Ok(("set crush map".into(), String::new()))
        }
        ["osd", "pool", "create", name, rest @ ..] => pool_create(p, config, name, rest, now_ms),
        ["osd", "pool", "rm" | "delete", name, again, flag] => {
            if name != again || *flag != "--yes-i-really-really-mean-it" {
                return Err(err(Errno::Perm, "WARNING: this will *PERMANENTLY DESTROY* all data stored in the pool. Pass the pool name twice, followed by --yes-i-really-really-mean-it."));
            }
            let id = pool_by_name(&p.osdmap, name)?.id;
            p.osdmap.pools.remove(&id);
            p.osdmap.pg_temp.retain(|pg, _| pg.pool != id);
            p.osdmap.primary_temp.retain(|pg, _| pg.pool != id);
            p.osd_dirty = true;
            Ok((format!("pool '{name}' removed"), String::new()))
        }
        ["osd", "pool", "rm" | "delete", ..] => Err(err(
            Errno::Perm,
            "WARNING: this will *PERMANENTLY DESTROY* all data stored in the pool. Pass the pool name twice, followed by --yes-i-really-really-mean-it.",
        )),
        ["osd", "pool", "rename", old, new] => {
            check_name(new)?;
            if p.osdmap.pool_by_name(new).is_some() {
                return Err(err(Errno::Exist, format!("pool '{new}' already exists")));
            }
            let id = pool_by_name(&p.osdmap, old)?.id;
            if let Some(pool) = p.osdmap.pools.get_mut(&id) {
                pool.name = new.to_string();
            }
            p.osd_dirty = true;
            Ok((format!("pool '{old}' renamed to '{new}'"), String::new()))
        }
        ["osd", "pool", "set", name, key, value] => pool_set(p, name, key, value),
        ["osd", "pool", "set-quota", name, key, value] => {
            let v: u64 = parse_num(key, value)?;
            let id = pool_by_name(&p.osdmap, name)?.id;
            let pool = p.osdmap.pools.get_mut(&id).expect("looked up by name");
            match *key {
                "max_objects" => pool.quota_max_objects = v,
                "max_bytes" => pool.quota_max_bytes = v,
                _ => return Err(inval(format!("unknown quota {key}; use max_objects or max_bytes"))),
            }
            p.osd_dirty = true;
            Ok((format!("set-quota {key} = {value} for pool {name}"), String::new()))
        }
        ["auth", verb @ ("get-or-create" | "add" | "get-or-create-key"), entity, caps @ ..] => auth_get_or_create(p, verb, entity, caps, json),
        ["auth", "caps", entity, caps @ ..] => {
            let caps = parse_caps(caps)?;
            let mut entry = p.auth.get(*entity).cloned().ok_or_else(|| err(Errno::NoEnt, format!("couldn't find entry {entity}")))?;
            entry.caps = caps;
            set_auth(p, entity, entry);
            Ok((format!("updated caps for {entity}"), String::new()))
        }
        ["auth", "rm" | "del", entity] => {
            if p.auth.remove(*entity).is_none() {
                return Err(err(Errno::NoEnt, format!("entity {entity} does not exist")));
            }
            p.auth_txs.push(Tx::AuthRm { entity: entity.to_string() });
            Ok(("updated".to_string(), String::new()))
        }
        // One membership change per log entry: each one ends a Paxos
        // configuration, and a name removed and added back in one entry
        // would keep its old node id.
        ["mon", "add" | "rm" | "remove", ..] if p.monmap.is_some() => Err(err(Errno::Again, "a monitor membership change is already pending; retry")),
        ["mon", "add", name, addr] => {
            let next = p.monmap().with_added(name, addr, now_ms).map_err(|e| err(Errno::Exist, e.to_string()))?;
            p.monmap = Some(next);
            Ok((format!("adding mon.{name} at {addr}"), String::new()))
        }
        ["mon", "rm" | "remove", name] => {
            let next = p.monmap().with_removed(name, now_ms).map_err(|e| err(Errno::NoEnt, e.to_string()))?;
            p.monmap = Some(next);
            Ok((format!("removing mon.{name}"), String::new()))
        }
        _ => Err(inval(format!("unknown or malformed command: {}", args.join(" ")))),
    }
}

fn crush_add_bucket(crush: &mut crush_simd::CrushMap, location: &[(String, String)]) -> Result<(), CmdError> {
    let (type_name, name) = &location[0];
    let type_id = crush.type_id(type_name).ok_or_else(|| err(Errno::NoEnt, format!("type {type_name} does not exist")))?;
    let mut id = -1;
    while crush.bucket(id).is_some() || crush.item_name(id).is_some() {
        id -= 1;
    }
    let bucket = crush_simd::Bucket::new(id, type_id, crush_simd::BucketAlg::Straw2, 0, vec![], vec![], 1)
        .map_err(|e| inval(e.to_string()))?;
    crush.add_bucket(name, bucket).map_err(|e| inval(e.to_string()))?;
    if location.len() > 1 {
        crush.move_item(name, &location[1..])?;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), CmdError> {
    if name.is_empty() || name.len() > sepia_proto::limits::name_bytes_max || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(inval(format!("invalid name '{name}'")));
    }
    // `osd pool create --help` must not make a pool named `--help`.
    if name.starts_with('-') {
        return Err(inval(format!("invalid name '{name}': a name may not begin with '-' (it reads as an option)")));
    }
    Ok(())
}

/// The caps `osd new` gives an OSD's own key (Ceph's, as `ceph osd new`
/// and `ceph-volume` create them).
pub const OSD_CAPS: [(&str, &str); 3] = [("mgr", "allow profile osd"), ("mon", "allow profile osd"), ("osd", "allow *")];

/// The secret in `osd new`'s parameters (Ceph's `-i` JSON:
/// `{"cephx_secret": "AQ..."}`), checked.
fn osd_new_secret(params: &str) -> Result<String, CmdError> {
    let v: serde_json::Value = serde_json::from_str(params).map_err(|e| inval(format!("osd new: parameters are not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| inval("osd new: parameters must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "cephx_secret") {
        return Err(inval(format!("osd new: unsupported parameter '{k}' (only cephx_secret)")));
    }
    let secret = obj.get("cephx_secret").and_then(|s| s.as_str()).ok_or_else(|| inval("osd new: cephx_secret must be a string"))?;
    sepia_proto::auth::key::Secret::from_keyring_string(secret).map_err(|e| inval(format!("osd new: bad cephx_secret: {e}")))?;
    Ok(secret.to_string())
}

/// `osd new [UUID [ID]] [PARAMS]`: a new OSD id (Ceph's shape). With
/// `{"cephx_secret": KEY}` the OSD's own entity `osd.ID` is created with
/// that key and [`OSD_CAPS`] in the same change. The same uuid (and key)
/// again returns the same id.
fn osd_new(p: &mut Pending, rest: &[&str], json: bool) -> Result<(String, String), CmdError> {
    let (rest, secret) = match rest.split_last() {
        Some((last, before)) if last.trim_start().starts_with('{') => (before, Some(osd_new_secret(last)?)),
        _ => (rest, None),
    };
    if rest.len() > 2 {
        return Err(inval("usage: osd new [UUID [ID]] [PARAMS_JSON]"));
    }
    let uuid = match rest.first() {
        Some(u) => parse_uuid(u)?,
        None => random_uuid(),
    };
    let answer = |id: OsdId| Ok((String::new(), if json { format!("{{\"osdid\":{id}}}") } else { id.to_string() }));
    // The OSD's entity: created with the key, or already holding it.
    let claim_entity = |p: &mut Pending, id: OsdId| -> Result<(), CmdError> {
        let Some(secret) = &secret else { return Ok(()) };
        let name = format!("osd.{id}");
        match p.auth.get(&name) {
            Some(e) if &e.key == secret => Ok(()),
            Some(_) => Err(err(Errno::Exist, format!("entity {name} exists with a different key"))),
            None => {
                let caps = OSD_CAPS.iter().map(|(s, c)| (s.to_string(), c.to_string())).collect();
                set_auth(p, &name, AuthEntry { key: secret.clone(), caps });
                Ok(())
            }
        }
    };
    // The same uuid again returns the same id (idempotent, like Ceph).
    if let Some(o) = p.osdmap.osds.iter().find(|o| o.exists && o.uuid == uuid) {
        let id = o.id;
        if let Some(want) = rest.get(1) {
            if parse_osd_id(want)? != id {
                return Err(err(Errno::Exist, format!("uuid {} is already osd.{id}", format::uuid(&uuid))));
            }
        }
        claim_entity(p, id)?;
        return answer(id);
    }
    let id = match rest.get(1) {
        Some(id) => {
            let id = parse_osd_id(id)?;
            if p.osdmap.osd(id).is_some() {
                return Err(err(Errno::Exist, format!("osd.{id} already exists with another uuid")));
            }
            id
        }
        None => (0..).find(|&i| p.osdmap.osd(i).is_none()).expect("some id is free"),
    };
    if id as usize >= sepia_proto::limits::osds_max {
        return Err(err(Errno::NoSpc, "too many OSDs"));
    }
    claim_entity(p, id)?;
    while p.osdmap.osds.len() <= id as usize {
        let next = p.osdmap.osds.len() as OsdId;
        p.osdmap.osds.push(OsdInfo { id: next, uuid: [0; 16], exists: false, up: false, weight: OSD_OUT, addrs: vec![], up_from: 0, down_at: 0, lost_at: 0 });
    }
    p.osdmap.osds[id as usize] = OsdInfo { id, uuid, exists: true, up: false, weight: OSD_IN, addrs: vec![], up_from: 0, down_at: 0, lost_at: 0 };
    p.osd_dirty = true;
    answer(id)
}

/// `osd lost ID --yes-i-really-mean-it` (Ceph's): records `lost_at` = this
/// map's epoch for a down OSD, so peering stops waiting for it in the past
/// intervals that ended before (the writes only it holds are given up).
/// It stays lost for those intervals if it boots again; intervals after
/// its return need it as any member.
fn osd_lost(p: &mut Pending, rest: &[&str]) -> Result<(String, String), CmdError> {
    const SURE: &str = "--yes-i-really-mean-it";
    let sure = rest.contains(&SURE);
    let ids: Vec<&str> = rest.iter().copied().filter(|w| *w != SURE).collect();
    if let Some(bad) = ids.iter().find(|w| w.starts_with("--")) {
        return Err(inval(format!("osd lost: unknown option {bad}")));
    }
    let [id] = ids.as_slice() else { return Err(inval(format!("usage: osd lost ID {SURE}"))) };
    let id = parse_osd_id(id)?;
    if !sure {
        return Err(err(
            Errno::Perm,
            format!(
                "are you SURE? this might mean real, permanent data loss: marking osd.{id} lost lets the PGs waiting for it go active \
                 without the writes only it holds. Pass {SURE} if you really do."
            ),
        ));
    }
    osd_exists(&p.osdmap, id)?;
    if p.osdmap.is_up(id) {
        return Err(err(Errno::Busy, format!("osd.{id} is not down")));
    }
    let epoch = p.osdmap.epoch;
    p.osdmap.osds[id as usize].lost_at = epoch;
    p.osd_dirty = true;
    Ok((format!("marked osd lost in epoch {epoch}"), String::new()))
}

/// An OSD boots: up, with its addresses; placed in CRUSH under its host
/// the first time (Ceph's `osd_crush_update_on_start`).
pub fn osd_boot(p: &mut Pending, boot: &OsdBoot, location_type: &str, was_auto_out: bool) -> Result<(), CmdError> {
    let id = boot.osd;
    osd_exists(&p.osdmap, id)?;
    if p.osdmap.flags & FLAG_NOUP != 0 {
        return Err(err(Errno::Again, "noup is set"));
    }
    if boot.addrs.is_empty() || boot.addrs.len() > sepia_proto::limits::shards_per_osd_max {
        return Err(inval(format!("osd.{id} boot with {} shard addresses", boot.addrs.len())));
    }
    if boot.addrs.iter().any(|a| a.len() > sepia_proto::limits::addr_bytes_max || a.parse::<std::net::SocketAddr>().is_err()) {
        return Err(inval(format!("osd.{id} boot with a malformed address")));
    }
    let known = p.osdmap.osds[id as usize].uuid;
    if known != [0; 16] && known != boot.uuid {
        return Err(err(Errno::Perm, format!("osd.{id} boot with uuid {} but the map has {}", format::uuid(&boot.uuid), format::uuid(&known))));
    }
    let name = format!("osd.{id}");
    if p.osdmap.crush.item_id(&name).is_none() || p.osdmap.crush.parent_of(id).is_none() {
        let host = if boot.hostname.is_empty() { "localhost".to_string() } else { boot.hostname.clone() };
        let mut location = vec![("root".to_string(), "default".to_string())];
        match location_type {
            "osd" | "" => location.push(("host".into(), host)),
            t => location.push((t.to_string(), host)),
        }
        p.osdmap.crush.add_or_move_device(id, &name, 0x10000, &location, None)?;
    }
    let epoch = p.osdmap.epoch;
    let o = &mut p.osdmap.osds[id as usize];
    o.up = true;
    o.uuid = boot.uuid;
    o.addrs = boot.addrs.clone();
    o.up_from = epoch;
    if was_auto_out && o.weight == OSD_OUT {
        o.weight = OSD_IN;
    }
    p.osd_dirty = true;
    Ok(())
}

fn pool_create(p: &mut Pending, config: &MonConfig, name: &str, rest: &[&str], _now_ms: u64) -> Result<(String, String), CmdError> {
    check_name(name)?;
    if p.osdmap.pool_by_name(name).is_some() {
        return Ok((format!("pool '{name}' already exists"), String::new()));
    }
    if p.osdmap.pools.len() >= sepia_proto::limits::pools_max {
        return Err(err(Errno::NoSpc, "too many pools"));
    }
    let mut pg_num: Option<u32> = None;
    let mut pgp_num: Option<u32> = None;
    let mut size: Option<u32> = None;
    let mut min_size: Option<u32> = None;
    let mut ec: Option<(u32, u32)> = None;
    let mut rule_name: Option<String> = None;
    let mut it = rest.iter();
    while let Some(word) = it.next() {
        let mut value = |flag: &str| it.next().copied().ok_or_else(|| inval(format!("{flag} needs a value")));
        match *word {
            "--size" => size = Some(parse_num("size", value("--size")?)?),
            "--min-size" => min_size = Some(parse_num("min_size", value("--min-size")?)?),
            "--ec" => {
                let v = value("--ec")?;
                let (k, m) = v.split_once('+').ok_or_else(|| inval(format!("--ec wants K+M, got {v}")))?;
                ec = Some((parse_num("k", k)?, parse_num("m", m)?));
            }
            "--rule" => rule_name = Some(value("--rule")?.to_string()),
            "replicated" => {}
            "erasure" => ec = ec.or(Some((2, 1))),
            n if pg_num.is_none() => pg_num = Some(parse_num("pg_num", n)?),
            n if pgp_num.is_none() => pgp_num = Some(parse_num("pgp_num", n)?),
            other => return Err(inval(format!("unexpected argument '{other}'"))),
        }
    }
    let pg_num = pg_num.unwrap_or(32);
    let pgp_num = pgp_num.unwrap_or(pg_num);
    if pg_num == 0 || pg_num as usize > sepia_proto::limits::pg_num_max || pgp_num == 0 || pgp_num > pg_num {
        return Err(err(Errno::Range, format!("pg_num {pg_num} / pgp_num {pgp_num} out of range")));
    }
    let (kind, size, min_size, crush_rule) = match ec {
        Some((k, m)) => {
            if k < 2 || m < 1 || (k + m) as usize > sepia_proto::limits::pool_size_max {
                return Err(inval(format!("erasure code {k}+{m} is not supported (k >= 2, m >= 1, k + m <= 255)")));
            }
            let rule = match rule_name {
                Some(r) => p.osdmap.crush.rules().find(|x| x.name == r).map(|x| x.id).ok_or_else(|| err(Errno::NoEnt, format!("rule {r} does not exist")))?,
                None => ec_rule(&mut p.osdmap, name, config)?,
            };
            let min = min_size.unwrap_or((k + 1).min(k + m));
            (PoolKind::Erasure { k, m, technique: "reed_sol_van".into() }, k + m, min, rule)
        }
        None => {
            let size = size.unwrap_or(3);
            let rule = match rule_name {
                Some(r) => p.osdmap.crush.rules().find(|x| x.name == r).map(|x| x.id).ok_or_else(|| err(Errno::NoEnt, format!("rule {r} does not exist")))?,
                None => p.osdmap.crush.rules().find(|r| r.rule_type == crush_simd::model::RULE_TYPE_REPLICATED).map(|r| r.id).ok_or_else(|| err(Errno::NoEnt, "no replicated crush rule"))?,
            };
            (PoolKind::Replicated, size, min_size.unwrap_or(size - size / 2), rule)
        }
    };
    if size == 0 || size as usize > sepia_proto::limits::pool_size_max || min_size == 0 || min_size > size {
        return Err(err(Errno::Inval, format!("size {size} / min_size {min_size} out of range")));
    }
    let id = p.osdmap.pool_max + 1;
    p.osdmap.pool_max = id;
    p.osdmap.pools.insert(
        id,
        Pool {
            id,
            name: name.to_string(),
            kind,
            size,
            min_size,
            pg_num,
            pgp_num,
            crush_rule,
            flags: POOL_FLAG_HASHPSPOOL,
            quota_max_bytes: 0,
            quota_max_objects: 0,
        },
    );
    p.osd_dirty = true;
    Ok((format!("pool '{name}' created"), String::new()))
}

/// An erasure rule for a new EC pool (Ceph names it after the pool).
fn ec_rule(map: &mut OsdMap, name: &str, config: &MonConfig) -> Result<i32, CmdError> {
    if let Some(r) = map.crush.rules().find(|r| r.name == name) {
        return Ok(r.id);
    }
    let root = map.crush.item_id("default").ok_or_else(|| err(Errno::NoEnt, "no CRUSH root 'default'"))?;
    let domain = map.crush.type_id(&config.crush_location_type).unwrap_or(0);
    let id = (0..).find(|&i| map.crush.rule(i).is_none()).expect("a free rule id");
    let leaf = if domain == 0 { Step::ChooseIndep { n: 0, type_id: 0 } } else { Step::ChooseLeafIndep { n: 0, type_id: domain } };
    map.crush
        .add_rule(Rule {
            id,
            name: name.to_string(),
            rule_type: RULE_TYPE_ERASURE,
            min_size: 3,
            max_size: 255,
            steps: vec![Step::SetChooseLeafTries(5), Step::SetChooseTries(100), Step::Take(root), leaf, Step::Emit],
        })
        .map_err(|e| inval(e.to_string()))?;
    Ok(id)
}

fn pool_set(p: &mut Pending, name: &str, key: &str, value: &str) -> Result<(String, String), CmdError> {
    let id = pool_by_name(&p.osdmap, name)?.id;
    let rules: Vec<(i32, String)> = p.osdmap.crush.rules().map(|r| (r.id, r.name.clone())).collect();
    let pool = p.osdmap.pools.get_mut(&id).expect("looked up by name");
    let num = || parse_num::<u32>(key, value);
    match key {
        "size" => {
            if pool.is_erasure() {
                return Err(err(Errno::NotSup, "can not change the size of an erasure-coded pool"));
            }
            let v = num()?;
            if v == 0 || v as usize > sepia_proto::limits::pool_size_max {
                return Err(err(Errno::Range, "pool size must be between 1 and 255"));
            }
            pool.size = v;
            pool.min_size = pool.min_size.min(v);
        }
        "min_size" => {
            let v = num()?;
            if v == 0 || v > pool.size {
                return Err(err(Errno::Range, format!("pool min_size must be between 1 and size, which is set to {}", pool.size)));
            }
            pool.min_size = v;
        }
        "pg_num" => {
            let v = num()?;
            if v == 0 || v as usize > sepia_proto::limits::pg_num_max {
                return Err(err(Errno::Range, "pg_num out of range"));
            }
            if v < pool.pg_num {
                return Err(err(Errno::NotSup, "decreasing pg_num (merging PGs) is not supported yet"));
            }
            pool.pg_num = v;
        }
        "pgp_num" => {
            let v = num()?;
            if v == 0 || v > pool.pg_num {
                return Err(err(Errno::Range, format!("specified pgp_num {v} must be between 1 and pg_num {}", pool.pg_num)));
            }
            pool.pgp_num = v;
        }
        "crush_rule" => {
            let rid = rules.iter().find(|(id, n)| n == value || id.to_string() == value).map(|(id, _)| *id);
            pool.crush_rule = rid.ok_or_else(|| err(Errno::NoEnt, format!("crush rule {value} does not exist")))?;
        }
        _ => return Err(inval(format!("unrecognized variable '{key}'"))),
    }
    p.osd_dirty = true;
    Ok((format!("set pool {id} {key} to {value}"), String::new()))
}

fn parse_caps(words: &[&str]) -> Result<BTreeMap<String, String>, CmdError> {
    if !words.len().is_multiple_of(2) {
        return Err(inval("caps come in pairs: SERVICE 'CAPS'"));
    }
    let mut caps = BTreeMap::new();
    for pair in words.chunks(2) {
        let service = pair[0];
        if !matches!(service, "mon" | "osd" | "mgr" | "mds") {
            return Err(inval(format!("unknown service '{service}' in caps")));
        }
        super::caps_check::validate(pair[1]).map_err(|e| inval(format!("bad {service} caps '{}': {e}", pair[1])))?;
        caps.insert(service.to_string(), pair[1].to_string());
    }
    Ok(caps)
}

fn set_auth(p: &mut Pending, entity: &str, entry: AuthEntry) {
    p.auth.insert(entity.to_string(), entry.clone());
    p.auth_txs.push(Tx::AuthSet { entity: entity.to_string(), entry });
}

fn auth_get_or_create(p: &mut Pending, verb: &str, entity: &str, caps: &[&str], json: bool) -> Result<(String, String), CmdError> {
    super::caps_check::validate_entity(entity).map_err(|e| inval(format!("bad entity name '{entity}': {e}")))?;
    let caps = parse_caps(caps)?;
    if let Some(existing) = p.auth.get(entity) {
        if !caps.is_empty() && existing.caps != caps {
            return Err(inval(format!("key for {entity} exists but cap {} does not match", caps.keys().next().cloned().unwrap_or_default())));
        }
        if verb == "add" && !caps.is_empty() {
            return Err(err(Errno::Exist, format!("entity {entity} exists")));
        }
        let out = if verb == "get-or-create-key" { existing.key.clone() } else { format::keyring_entry(entity, existing, json) };
        return Ok((String::new(), out));
    }
    let entry = AuthEntry { key: super::caps_check::new_key(), caps };
    set_auth(p, entity, entry.clone());
    let out = if verb == "get-or-create-key" { entry.key.clone() } else { format::keyring_entry(entity, &entry, json) };
    Ok((if verb == "add" { format!("added key for {entity}") } else { String::new() }, out))
}

fn parse_uuid(s: &str) -> Result<[u8; 16], CmdError> {
    sepia_proto::uuid::parse(s).ok_or_else(|| inval(format!("invalid uuid '{s}'")))
}

fn random_uuid() -> [u8; 16] {
    sepia_proto::uuid::random()
}
