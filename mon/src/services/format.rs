//! What the read-only commands print, as text shaped like Ceph's and as
//! JSON with Ceph's field names where tools depend on them.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sepia_proto::monmap::MonMap;
use sepia_proto::osdmap::{OsdId, OsdMap, Pool, PoolKind, OSD_OUT, POOL_FLAG_HASHPSPOOL};

use super::command::MAP_FLAGS;
use super::service::{MonConfig, QuorumInfo};
use super::state::{AuthEntry, ClusterState};

/// PGs examined for the degraded/inactive health checks: beyond this the
/// checks are skipped rather than stall the monitor.
#[allow(non_upper_case_globals)]
const health_pg_scan_max: usize = 1 << 18;

pub fn uuid(u: &[u8; 16]) -> String {
    sepia_proto::uuid::format(u)
}

fn pretty(v: Value) -> String {
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn weight_f(w: u32) -> f64 {
    f64::from(w) / 65536.0
}

fn pool_type(p: &Pool) -> &'static str {
    match p.kind {
        PoolKind::Replicated => "replicated",
        PoolKind::Erasure { .. } => "erasure",
    }
}

/// The health checks: (code, severity, summary, details).
fn health_checks(state: &ClusterState, quorum: &QuorumInfo) -> Vec<(&'static str, &'static str, String, Vec<String>)> {
    let map = &state.osdmap;
    let mut checks = Vec::new();
    let total_mons = state.monmap.mons.len();
    if quorum.members.len() < total_mons {
        let down: Vec<String> = state.monmap.mons.iter().filter(|m| !quorum.members.contains(&m.name)).map(|m| format!("mon.{} is down (out of quorum)", m.name)).collect();
        checks.push((
            "MON_DOWN",
            "HEALTH_WARN",
            format!("{}/{} mons down, quorum {}", total_mons - quorum.members.len(), total_mons, quorum.members.join(",")),
            down,
        ));
    }
    let existing: Vec<_> = map.osds.iter().filter(|o| o.exists).collect();
    let down: Vec<_> = existing.iter().filter(|o| !o.up && o.weight != OSD_OUT).collect();
    if !down.is_empty() {
        checks.push((
            "OSD_DOWN",
            "HEALTH_WARN",
            format!("{} osds down", down.len()),
            down.iter().map(|o| format!("osd.{} is down", o.id)).collect(),
        ));
    }
    let flags: Vec<&str> = MAP_FLAGS.iter().filter(|(_, b)| map.flags & b != 0).map(|(n, _)| *n).collect();
    if !flags.is_empty() {
        checks.push(("OSDMAP_FLAGS", "HEALTH_WARN", format!("{} flag(s) set", flags.join(",")), vec![]));
    }
    let max_size = map.pools.values().map(|p| p.size).max().unwrap_or(0) as usize;
    if !map.pools.is_empty() && existing.len() < max_size {
        checks.push(("TOO_FEW_OSDS", "HEALTH_WARN", format!("OSD count {} < pool size {}", existing.len(), max_size), vec![]));
    }
    let total_pgs: usize = map.pools.values().map(|p| p.pg_num as usize).sum();
    if total_pgs > 0 && total_pgs <= health_pg_scan_max {
        let weights = map.crush_weights();
        let mut ws = crush_simd::Workspace::new();
        let (mut undersized, mut inactive) = (0usize, 0usize);
        for pool in map.pools.values() {
            for seed in 0..pool.pg_num {
                let pg = sepia_proto::osdmap::PgId { pool: pool.id, seed };
                let placed = map.pg_placement_with(pool, pg, &weights, &mut ws);
                let members = placed.acting.iter().filter(|&&o| o != crush_simd::ITEM_NONE).count();
                if members < pool.min_size as usize {
                    inactive += 1;
                } else if members < pool.size as usize {
                    undersized += 1;
                }
            }
        }
        if inactive > 0 {
            checks.push(("PG_AVAILABILITY", "HEALTH_WARN", format!("Reduced data availability: {inactive} pgs inactive"), vec![]));
        }
        if undersized > 0 {
            checks.push(("PG_DEGRADED", "HEALTH_WARN", format!("Degraded data redundancy: {undersized} pgs undersized"), vec![]));
        }
    }
    checks
}

fn health_status(checks: &[(&str, &str, String, Vec<String>)]) -> &'static str {
    if checks.iter().any(|c| c.1 == "HEALTH_ERR") {
        "HEALTH_ERR"
    } else if checks.is_empty() {
        "HEALTH_OK"
    } else {
        "HEALTH_WARN"
    }
}

fn health_json(checks: &[(&str, &str, String, Vec<String>)]) -> Value {
    let mut map = serde_json::Map::new();
    for (code, sev, summary, detail) in checks {
        map.insert(
            code.to_string(),
            json!({"severity": sev, "summary": {"message": summary}, "detail": detail.iter().map(|d| json!({"message": d})).collect::<Vec<_>>()}),
        );
    }
    json!({"status": health_status(checks), "checks": Value::Object(map)})
}

pub fn health(state: &ClusterState, quorum: &QuorumInfo, json_out: bool, detail: bool) -> String {
    let checks = health_checks(state, quorum);
    if json_out {
        return pretty(health_json(&checks));
    }
    let mut out = health_status(&checks).to_string();
    if !checks.is_empty() {
        let summaries: Vec<&str> = checks.iter().map(|c| c.2.as_str()).collect();
        out.push(' ');
        out.push_str(&summaries.join("; "));
    }
    if detail {
        for (code, _, summary, details) in &checks {
            out.push_str(&format!("\n[WRN] {code}: {summary}"));
            for d in details {
                out.push_str(&format!("\n    {d}"));
            }
        }
    }
    out
}

pub fn status(state: &ClusterState, quorum: &QuorumInfo, _config: &MonConfig, json_out: bool) -> String {
    let map = &state.osdmap;
    let checks = health_checks(state, quorum);
    let osds = map.osds.iter().filter(|o| o.exists).count();
    let up = map.osds.iter().filter(|o| o.exists && o.up).count();
    let in_ = map.osds.iter().filter(|o| o.exists && o.weight != OSD_OUT).count();
    let pgs: u64 = map.pools.values().map(|p| u64::from(p.pg_num)).sum();
    if json_out {
        return pretty(json!({
            "fsid": uuid(&state.fsid()),
            "health": health_json(&checks),
            "election_epoch": quorum.election_epoch,
            "quorum_names": quorum.members,
            "quorum_leader_name": quorum.leader,
            "monmap": {"epoch": state.monmap.epoch, "num_mons": state.monmap.mons.len()},
            "osdmap": {"epoch": map.epoch, "num_osds": osds, "num_up_osds": up, "num_in_osds": in_},
            "pgmap": {"num_pools": map.pools.len(), "num_pgs": pgs},
        }));
    }
    let mut health_lines = health_status(&checks).to_string();
    for c in &checks {
        health_lines.push_str(&format!("\n            {}", c.2));
    }
    format!(
        "  cluster:\n    id:     {}\n    health: {}\n\n  services:\n    mon: {} daemons, quorum {} (leader {})\n    osd: {} osds: {} up, {} in; epoch e{}\n\n  data:\n    pools:   {} pools, {} pgs\n",
        uuid(&state.fsid()),
        health_lines,
        state.monmap.mons.len(),
        quorum.members.join(","),
        quorum.leader.clone().unwrap_or_else(|| "none".into()),
        osds,
        up,
        in_,
        map.epoch,
        map.pools.len(),
        pgs
    )
}

fn monmap_json(m: &MonMap) -> Value {
    json!({
        "epoch": m.epoch,
        "fsid": uuid(&m.fsid),
        "created_ms": m.created_ms,
        "modified_ms": m.modified_ms,
        "mons": m.mons.iter().map(|x| json!({"rank": x.rank, "name": x.name, "addr": x.addr, "public_addr": x.addr})).collect::<Vec<_>>(),
    })
}

pub fn quorum_status(state: &ClusterState, quorum: &QuorumInfo) -> String {
    let ranks: Vec<u32> = state.monmap.mons.iter().filter(|m| quorum.members.contains(&m.name)).map(|m| m.rank).collect();
    pretty(json!({
        "election_epoch": quorum.election_epoch,
        "quorum": ranks,
        "quorum_names": quorum.members,
        "quorum_leader_name": quorum.leader.clone().unwrap_or_default(),
        "monmap": monmap_json(&state.monmap),
    }))
}

pub fn mon_dump(m: &MonMap, json_out: bool) -> String {
    if json_out {
        return pretty(monmap_json(m));
    }
    let mut out = format!("epoch {}\nfsid {}\n", m.epoch, uuid(&m.fsid));
    for x in &m.mons {
        out.push_str(&format!("{}: {} mon.{}\n", x.rank, x.addr, x.name));
    }
    out.push_str(&format!("dumped monmap epoch {}", m.epoch));
    out
}

pub fn mon_stat(m: &MonMap, quorum: &QuorumInfo) -> String {
    format!(
        "e{}: {} mons at {{{}}}, election epoch {}, leader {}, quorum {}",
        m.epoch,
        m.mons.len(),
        m.mons.iter().map(|x| format!("{}={}", x.name, x.addr)).collect::<Vec<_>>().join(","),
        quorum.election_epoch,
        quorum.leader.clone().unwrap_or_default(),
        quorum.members.join(",")
    )
}

fn pool_json(p: &Pool, map: &OsdMap) -> Value {
    let (k, m) = match p.kind {
        PoolKind::Erasure { k, m, .. } => (Some(k), Some(m)),
        PoolKind::Replicated => (None, None),
    };
    json!({
        "pool": p.id,
        "pool_name": p.name,
        "type": pool_type(p),
        "size": p.size,
        "min_size": p.min_size,
        "pg_num": p.pg_num,
        "pgp_num": p.pgp_num,
        "crush_rule": p.crush_rule,
        "crush_rule_name": map.crush.rule(p.crush_rule).map(|r| r.name.clone()),
        "flags_names": if p.flags & POOL_FLAG_HASHPSPOOL != 0 { "hashpspool" } else { "" },
        "quota_max_bytes": p.quota_max_bytes,
        "quota_max_objects": p.quota_max_objects,
        "erasure_code_k": k,
        "erasure_code_m": m,
    })
}

fn pool_line(p: &Pool) -> String {
    let ec = match &p.kind {
        PoolKind::Erasure { k, m, technique } => format!(" erasure_code k={k} m={m} technique={technique}"),
        PoolKind::Replicated => String::new(),
    };
    format!(
        "pool {} '{}' {} size {} min_size {} crush_rule {} object_hash rjenkins pg_num {} pgp_num {}{} flags {}{}",
        p.id,
        p.name,
        pool_type(p),
        p.size,
        p.min_size,
        p.crush_rule,
        p.pg_num,
        p.pgp_num,
        ec,
        if p.flags & POOL_FLAG_HASHPSPOOL != 0 { "hashpspool" } else { "" },
        if p.quota_max_bytes + p.quota_max_objects > 0 {
            format!(" max_bytes {} max_objects {}", p.quota_max_bytes, p.quota_max_objects)
        } else {
            String::new()
        }
    )
}

pub fn osd_dump(map: &OsdMap, json_out: bool) -> String {
    let flags: Vec<&str> = MAP_FLAGS.iter().filter(|(_, b)| map.flags & b != 0).map(|(n, _)| *n).collect();
    if json_out {
        return pretty(json!({
            "epoch": map.epoch,
            "fsid": uuid(&map.fsid),
            "created_ms": map.created_ms,
            "modified_ms": map.modified_ms,
            "flags": flags.join(","),
            "pool_max": map.pool_max,
            "max_osd": map.osds.len(),
            "pools": map.pools.values().map(|p| pool_json(p, map)).collect::<Vec<_>>(),
            "osds": map.osds.iter().filter(|o| o.exists).map(|o| json!({
                "osd": o.id, "uuid": uuid(&o.uuid), "up": u8::from(o.up), "in": u8::from(o.weight != OSD_OUT),
                "weight": weight_f(o.weight), "up_from": o.up_from, "down_at": o.down_at, "lost_at": o.lost_at,
                "shards": o.addrs.len(), "addrs": o.addrs,
            })).collect::<Vec<_>>(),
            "pg_temp": map.pg_temp.iter().map(|(pg, v)| json!({"pgid": pg.to_string(), "osds": v})).collect::<Vec<_>>(),
            "primary_temp": map.primary_temp.iter().map(|(pg, o)| json!({"pgid": pg.to_string(), "osd": o})).collect::<Vec<_>>(),
        }));
    }
    let mut out = format!(
        "epoch {}\nfsid {}\ncreated_ms {}\nmodified_ms {}\nflags {}\npool_max {}\n\n",
        map.epoch,
        uuid(&map.fsid),
        map.created_ms,
        map.modified_ms,
        flags.join(","),
        map.pool_max
    );
    for p in map.pools.values() {
        out.push_str(&pool_line(p));
        out.push('\n');
    }
    out.push_str(&format!("\nmax_osd {}\n", map.osds.len()));
    for o in map.osds.iter().filter(|o| o.exists) {
        out.push_str(&format!(
            "osd.{} {} {} weight {} up_from {} down_at {}{} shards {} {} {}\n",
            o.id,
            if o.up { "up  " } else { "down" },
            if o.weight != OSD_OUT { "in " } else { "out" },
            weight_f(o.weight),
            o.up_from,
            o.down_at,
            // As Ceph prints it: only for an OSD marked lost.
            if o.lost_at != 0 { format!(" lost_at {}", o.lost_at) } else { String::new() },
            o.addrs.len(),
            if o.addrs.is_empty() { "-".to_string() } else { o.addrs.join(",") },
            uuid(&o.uuid)
        ));
    }
    for (pg, v) in &map.pg_temp {
        out.push_str(&format!("pg_temp {pg} {v:?}\n"));
    }
    for (pg, o) in &map.primary_temp {
        out.push_str(&format!("primary_temp {pg} {o}\n"));
    }
    out
}

/// `osd tree`: the CRUSH hierarchy with each OSD's state.
pub fn osd_tree(map: &OsdMap, json_out: bool) -> String {
    let crush = &map.crush;
    let mut roots: Vec<i32> = crush.buckets().map(|b| b.id).filter(|&id| !crush.is_shadow(id) && crush.parent_of(id).is_none()).collect();
    roots.sort_unstable_by(|a, b| b.cmp(a));
    let mut rows: Vec<(i32, usize, u32)> = Vec::new(); // (id, depth, weight)
    fn walk(crush: &crush_simd::CrushMap, id: i32, depth: usize, weight: u32, rows: &mut Vec<(i32, usize, u32)>) {
        rows.push((id, depth, weight));
        if depth > 32 {
            return;
        }
        if let Some(b) = crush.bucket(id) {
            for (i, &item) in b.items.iter().enumerate() {
                walk(crush, item, depth + 1, b.item_weights[i], rows);
            }
        }
    }
    for r in roots {
        let w = crush.bucket(r).map_or(0, |b| b.weight);
        walk(crush, r, 0, w, &mut rows);
    }
    let placed: std::collections::BTreeSet<i32> = rows.iter().map(|r| r.0).filter(|&i| i >= 0).collect();
    let stray: Vec<OsdId> = map.osds.iter().filter(|o| o.exists && !placed.contains(&o.id)).map(|o| o.id).collect();
    let type_of = |id: i32| -> String {
        if id >= 0 {
            crush.type_names.get(&0).cloned().unwrap_or_else(|| "osd".into())
        } else {
            crush.bucket(id).and_then(|b| crush.type_names.get(&b.type_id).cloned()).unwrap_or_default()
        }
    };
    let class_of = |id: i32| -> String {
        crush.device_classes.get(&id).and_then(|c| crush.class_names.get(c).cloned()).unwrap_or_default()
    };
    let status_of = |id: OsdId| -> (String, f64) {
        match map.osd(id) {
            Some(o) => ((if o.up { "up" } else { "down" }).to_string(), weight_f(o.weight)),
            None => ("DNE".to_string(), 0.0),
        }
    };
    if json_out {
        let nodes: Vec<Value> = rows
            .iter()
            .map(|&(id, depth, w)| {
                let mut v = json!({"id": id, "name": crush.item_name(id).unwrap_or(""), "type": type_of(id), "crush_weight": weight_f(w), "depth": depth});
                if let Some(b) = crush.bucket(id) {
                    v["children"] = json!(b.items);
                    v["type_id"] = json!(b.type_id);
                } else {
                    let (status, reweight) = status_of(id);
                    v["status"] = json!(status);
                    v["reweight"] = json!(reweight);
                    v["device_class"] = json!(class_of(id));
                    v["type_id"] = json!(0);
                }
                v
            })
            .collect();
        let stray: Vec<Value> = stray
            .iter()
            .map(|&id| {
                let (status, reweight) = status_of(id);
                json!({"id": id, "name": format!("osd.{id}"), "type": "osd", "type_id": 0, "status": status, "reweight": reweight})
            })
            .collect();
        return pretty(json!({"nodes": nodes, "stray": stray}));
    }
    let mut out = format!("{:<4} {:<6} {:>9}  {:<24} {:>6}  {:>8}\n", "ID", "CLASS", "WEIGHT", "TYPE NAME", "STATUS", "REWEIGHT");
    for &(id, depth, w) in &rows {
        let name = format!("{}{} {}", "    ".repeat(depth), type_of(id), crush.item_name(id).unwrap_or("?"));
        if id >= 0 {
            let (status, reweight) = status_of(id);
            out.push_str(&format!("{:<4} {:<6} {:>9.5}  {:<24} {:>6}  {:>8.5}\n", id, class_of(id), weight_f(w), name, status, reweight));
        } else {
            out.push_str(&format!("{:<4} {:<6} {:>9.5}  {}\n", id, "", weight_f(w), name));
        }
    }
    for id in stray {
        let (status, reweight) = status_of(id);
        out.push_str(&format!("{:<4} {:<6} {:>9.5}  {:<24} {:>6}  {:>8.5}\n", id, "", 0.0, format!("osd.{id}"), status, reweight));
    }
    out
}

pub fn osd_ls(map: &OsdMap, json_out: bool) -> String {
    let ids: Vec<OsdId> = map.osds.iter().filter(|o| o.exists).map(|o| o.id).collect();
    if json_out {
        return json!(ids).to_string();
    }
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n")
}

pub fn osd_stat(map: &OsdMap, json_out: bool) -> String {
    let osds = map.osds.iter().filter(|o| o.exists).count();
    let up = map.osds.iter().filter(|o| o.exists && o.up).count();
    let in_ = map.osds.iter().filter(|o| o.exists && o.weight != OSD_OUT).count();
    if json_out {
        return json!({"epoch": map.epoch, "num_osds": osds, "num_up_osds": up, "num_in_osds": in_}).to_string();
    }
    format!("{osds} osds: {up} up, {in_} in; epoch: e{}", map.epoch)
}

/// `osd map POOL OBJECT`, like Ceph's.
pub fn osd_map(map: &OsdMap, pool: &Pool, object: &str, namespace: &str, json_out: bool) -> Result<String, super::command::CmdError> {
    let pg = pool.object_pg(object, None, namespace);
    let raw = sepia_proto::pg::str_hash_rjenkins(
        &(if namespace.is_empty() { object.as_bytes().to_vec() } else { [namespace.as_bytes(), &[0x1f], object.as_bytes()].concat() }),
    );
    let placed = map.pg_placement(pg).map_err(|e| super::command::CmdError { errno: sepia_proto::errno::Errno::NoEnt, message: e.to_string() })?;
    let p = |x: Option<OsdId>| x.unwrap_or(-1);
    if json_out {
        return Ok(json!({
            "epoch": map.epoch,
            "pool": pool.name,
            "pool_id": pool.id,
            "objname": object,
            "raw_pgid": format!("{}.{:x}", pool.id, raw),
            "pgid": pg.to_string(),
            "up": placed.up,
            "up_primary": p(placed.up_primary),
            "acting": placed.acting,
            "acting_primary": p(placed.acting_primary),
        })
        .to_string());
    }
    let set = |v: &[OsdId]| v.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(",");
    Ok(format!(
        "osdmap e{} pool '{}' ({}) object '{}' -> pg {}.{:x} ({}) -> up ([{}], p{}) acting ([{}], p{})",
        map.epoch,
        pool.name,
        pool.id,
        object,
        pool.id,
        raw,
        pg,
        set(&placed.up),
        p(placed.up_primary),
        set(&placed.acting),
        p(placed.acting_primary)
    ))
}

pub fn osd_find(map: &OsdMap, id: OsdId) -> String {
    let o = map.osd(id);
    let mut loc = BTreeMap::new();
    let mut up = map.crush.parent_of(id);
    while let Some(b) = up {
        if let (Some(bucket), Some(name)) = (map.crush.bucket(b), map.crush.item_name(b)) {
            loc.insert(map.crush.type_names.get(&bucket.type_id).cloned().unwrap_or_default(), name.to_string());
        }
        up = map.crush.parent_of(b);
    }
    pretty(json!({"osd": id, "addrs": o.map(|o| o.addrs.clone()).unwrap_or_default(), "crush_location": loc}))
}

pub fn pool_ls(map: &OsdMap, json_out: bool, detail: bool) -> String {
    if json_out {
        if detail {
            return pretty(json!(map.pools.values().map(|p| pool_json(p, map)).collect::<Vec<_>>()));
        }
        return json!(map.pools.values().map(|p| p.name.clone()).collect::<Vec<_>>()).to_string();
    }
    if detail {
        return map.pools.values().map(pool_line).collect::<Vec<_>>().join("\n");
    }
    map.pools.values().map(|p| p.name.clone()).collect::<Vec<_>>().join("\n")
}

pub fn pool_get(pool: &Pool, map: &OsdMap, key: &str, json_out: bool) -> Result<String, super::command::CmdError> {
    let all = pool_json(pool, map);
    let value = match key {
        "all" => {
            if json_out {
                return Ok(pretty(all));
            }
            return Ok(["size", "min_size", "pg_num", "pgp_num", "crush_rule"]
                .iter()
                .map(|k| format!("{k}: {}", all[k]))
                .collect::<Vec<_>>()
                .join("\n"));
        }
        "size" | "min_size" | "pg_num" | "pgp_num" => all[key].clone(),
        "crush_rule" => all["crush_rule_name"].clone(),
        _ => {
            return Err(super::command::CmdError { errno: sepia_proto::errno::Errno::Inval, message: format!("unrecognized variable '{key}'") })
        }
    };
    if json_out {
        return Ok(json!({"pool": pool.name, "pool_id": pool.id, key: value}).to_string());
    }
    Ok(format!("{key}: {}", value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())))
}

pub fn pool_quota(pool: &Pool, json_out: bool) -> String {
    if json_out {
        return json!({"pool_name": pool.name, "pool_id": pool.id, "quota_max_objects": pool.quota_max_objects, "quota_max_bytes": pool.quota_max_bytes}).to_string();
    }
    let show = |v: u64| if v == 0 { "N/A".to_string() } else { v.to_string() };
    format!("quotas for pool '{}':\n  max objects: {}\n  max bytes  : {}", pool.name, show(pool.quota_max_objects), show(pool.quota_max_bytes))
}

/// One entity in Ceph's keyring format (or JSON).
pub fn keyring_entry(entity: &str, e: &AuthEntry, json_out: bool) -> String {
    if json_out {
        return pretty(json!([{"entity": entity, "key": e.key, "caps": e.caps}]));
    }
    let mut out = format!("[{entity}]\n\tkey = {}\n", e.key);
    for (service, caps) in &e.caps {
        out.push_str(&format!("\tcaps {service} = \"{caps}\"\n"));
    }
    out
}

pub fn auth_ls(auth: &BTreeMap<String, AuthEntry>, json_out: bool) -> String {
    if json_out {
        return pretty(json!({"auth_dump": auth.iter().map(|(n, e)| json!({"entity": n, "key": e.key, "caps": e.caps})).collect::<Vec<_>>()}));
    }
    let mut out = String::new();
    for (n, e) in auth {
        out.push_str(&format!("{n}\n\tkey: {}\n", e.key));
        for (s, c) in &e.caps {
            out.push_str(&format!("\tcaps: [{s}] {c}\n"));
        }
    }
    out
}
