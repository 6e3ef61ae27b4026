//! Properties of the OSDMap: incrementals reproduce the next full map, the
//! encodings round trip, and PG placement follows Ceph's rules.

use crush_simd::compare::synthetic_map;
use proptest::prelude::*;
use sepia_proto::osdmap::{OsdInfo, OsdMap, OsdMapIncremental, PgId, Pool, PoolKind, OSD_IN, OSD_OUT, POOL_FLAG_HASHPSPOOL};

fn base_map() -> OsdMap {
    let crush = synthetic_map(2, 3, 4); // 24 OSDs, rule 0 replicated, rule 1 EC
    let mut map = OsdMap::new([7; 16], crush, 1_000);
    for id in 0..24 {
        map.osds.push(OsdInfo {
            id,
            uuid: [id as u8; 16],
            exists: true,
            up: true,
            weight: OSD_IN,
            addrs: vec![format!("127.0.0.1:{}", 6800 + id * 2), format!("127.0.0.1:{}", 6801 + id * 2)],
            up_from: 1,
            down_at: 0,
            lost_at: 0,
        });
    }
    map
}

/// One edit a monitor could commit.
#[derive(Debug, Clone)]
enum Edit {
    CreatePool { pg_num: u32, size: u32, ec: bool },
    RemovePool(usize),
    SetPgNum(usize, u32),
    MarkDown(i32),
    MarkUp(i32),
    MarkOut(i32),
    MarkLost(i32),
    Reweight(i32, u32),
    AddOsd,
    PgTemp(usize, u32, Vec<i32>),
    ClearPgTemp(usize),
    PrimaryTemp(usize, u32, i32),
    Flags(u64),
    CrushOut(i32),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (1u32..256, 1u32..5, any::<bool>()).prop_map(|(pg_num, size, ec)| Edit::CreatePool { pg_num, size, ec }),
        (0usize..8).prop_map(Edit::RemovePool),
        (0usize..8, 1u32..512).prop_map(|(p, n)| Edit::SetPgNum(p, n)),
        (0i32..26).prop_map(Edit::MarkDown),
        (0i32..26).prop_map(Edit::MarkUp),
        (0i32..26).prop_map(Edit::MarkOut),
        (0i32..26).prop_map(Edit::MarkLost),
        (0i32..26, 0u32..=0x10000).prop_map(|(o, w)| Edit::Reweight(o, w)),
        Just(Edit::AddOsd),
        (0usize..8, 0u32..64, proptest::collection::vec(0i32..24, 1..4)).prop_map(|(p, s, v)| Edit::PgTemp(p, s, v)),
        (0usize..8).prop_map(Edit::ClearPgTemp),
        (0usize..8, 0u32..64, 0i32..24).prop_map(|(p, s, o)| Edit::PrimaryTemp(p, s, o)),
        any::<u64>().prop_map(Edit::Flags),
        (0i32..24).prop_map(Edit::CrushOut),
    ]
}

fn apply_edit(map: &mut OsdMap, e: &Edit) {
    let pool_ids: Vec<i64> = map.pools.keys().copied().collect();
    let pick = |i: usize| pool_ids.get(i % pool_ids.len().max(1)).copied();
    match e.clone() {
        Edit::CreatePool { pg_num, size, ec } => {
            map.pool_max += 1;
            let id = map.pool_max;
            let (kind, size, rule) = if ec {
                (PoolKind::Erasure { k: size + 1, m: 1, technique: "reed_sol_van".into() }, size + 2, 1)
            } else {
                (PoolKind::Replicated, size, 0)
            };
            map.pools.insert(
                id,
                Pool {
                    id,
                    name: format!("pool{id}"),
                    kind,
                    size,
                    min_size: 1,
                    pg_num,
                    pgp_num: pg_num,
                    crush_rule: rule,
                    flags: POOL_FLAG_HASHPSPOOL,
                    quota_max_bytes: 0,
                    quota_max_objects: 0,
                },
            );
        }
        Edit::RemovePool(i) => {
            if let Some(id) = pick(i) {
                map.pools.remove(&id);
                map.pg_temp.retain(|pg, _| pg.pool != id);
                map.primary_temp.retain(|pg, _| pg.pool != id);
            }
        }
        Edit::SetPgNum(i, n) => {
            if let Some(id) = pick(i) {
                let p = map.pools.get_mut(&id).unwrap();
                p.pg_num = n;
                p.pgp_num = n;
            }
        }
        Edit::MarkDown(o) => {
            if let Some(osd) = map.osds.get_mut(o as usize) {
                osd.up = false;
                osd.down_at = map.epoch;
            }
        }
        Edit::MarkUp(o) => {
            if let Some(osd) = map.osds.get_mut(o as usize) {
                osd.up = osd.exists;
                osd.up_from = map.epoch;
            }
        }
        Edit::MarkLost(o) => {
            if let Some(osd) = map.osds.get_mut(o as usize) {
                osd.lost_at = map.epoch;
            }
        }
        Edit::MarkOut(o) => {
            if let Some(osd) = map.osds.get_mut(o as usize) {
                osd.weight = OSD_OUT;
            }
        }
        Edit::Reweight(o, w) => {
            if let Some(osd) = map.osds.get_mut(o as usize) {
                osd.weight = w;
            }
        }
        Edit::AddOsd => {
            let id = map.osds.len() as i32;
            map.osds.push(OsdInfo {
                id,
                uuid: [9; 16],
                exists: true,
                up: false,
                weight: OSD_IN,
                addrs: vec![format!("127.0.0.1:{}", 7000 + id)],
                up_from: 0,
                down_at: 0,
                lost_at: 0,
            });
        }
        Edit::PgTemp(i, seed, v) => {
            if let Some(id) = pick(i) {
                map.pg_temp.insert(PgId { pool: id, seed }, v);
            }
        }
        Edit::ClearPgTemp(i) => {
            if let Some(id) = pick(i) {
                map.pg_temp.retain(|pg, _| pg.pool != id);
            }
        }
        Edit::PrimaryTemp(i, seed, o) => {
            if let Some(id) = pick(i) {
                map.primary_temp.insert(PgId { pool: id, seed }, o);
            }
        }
        Edit::Flags(f) => map.flags = f,
        Edit::CrushOut(o) => {
            // A CRUSH edit: drop a device's weight to zero in its host.
            let mut crush = map.crush.clone();
            let host = crush.buckets().find(|b| b.items.contains(&o)).map(|b| b.id);
            if let Some(h) = host {
                let b = crush.bucket(h).unwrap().clone();
                let weights: Vec<u32> = b.items.iter().zip(&b.item_weights).map(|(&i, &w)| if i == o { 0 } else { w }).collect();
                let rebuilt = crush_simd::Bucket::new(b.id, b.type_id, b.alg, b.hash, b.items.clone(), weights, 1).unwrap();
                let name = crush.item_name(h).unwrap().to_string();
                crush = rebuild_with(crush, &name, rebuilt);
                map.crush = crush;
            }
        }
    }
}

/// Replaces one bucket of a CRUSH map through the wire form.
fn rebuild_with(crush: crush_simd::CrushMap, name: &str, bucket: crush_simd::Bucket) -> crush_simd::CrushMap {
    let mut wire = crush_simd::wire::CrushWire::from_map(&crush);
    for b in wire.buckets.iter_mut().filter(|b| b.name == name) {
        b.weights = bucket.item_weights.clone();
    }
    wire.to_map().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn incrementals_rebuild_every_epoch(edits in proptest::collection::vec(proptest::collection::vec(edit(), 1..4), 1..12)) {
        let mut full = base_map();
        let mut follower = full.clone();
        for batch in &edits {
            let mut next = full.clone();
            next.epoch += 1;
            next.modified_ms += 10;
            for e in batch {
                apply_edit(&mut next, e);
            }
            let inc = full.diff(&next);
            // Over the wire, as a subscriber receives it.
            let inc = OsdMapIncremental::decode(&inc.encode()).unwrap();
            follower.apply(&inc).unwrap();
            prop_assert_eq!(&follower, &next);
            full = next;
        }
        let decoded = OsdMap::decode(&full.encode()).unwrap();
        prop_assert_eq!(&decoded, &full);
    }
}

#[test]
fn an_incremental_for_the_wrong_epoch_or_cluster_is_refused() {
    let map = base_map();
    let mut next = map.clone();
    next.epoch = 3;
    let inc = map.diff(&next);
    let mut m = map.clone();
    assert!(m.apply(&inc).is_err());
    let mut other = next.clone();
    other.epoch = 2;
    let mut inc = map.diff(&other);
    inc.fsid = [1; 16];
    assert!(m.apply(&inc).is_err());
    assert_eq!(m, map, "a refused incremental changes nothing");
}

#[test]
fn down_osds_leave_replicated_up_sets_and_hole_ec_up_sets() {
    let mut map = base_map();
    apply_edit(&mut map, &Edit::CreatePool { pg_num: 64, size: 3, ec: false });
    apply_edit(&mut map, &Edit::CreatePool { pg_num: 64, size: 2, ec: true }); // k=3, m=1: size 4
    let (rep, ec) = (1, 2);
    let victim = map.pg_placement(PgId { pool: rep, seed: 5 }).unwrap().up[0];
    map.osds[victim as usize].up = false;
    for seed in 0..64 {
        let r = map.pg_placement(PgId { pool: rep, seed }).unwrap();
        assert!(!r.up.contains(&victim));
        assert_eq!(r.up_primary, r.up.first().copied());
        let e = map.pg_placement(PgId { pool: ec, seed }).unwrap();
        assert_eq!(e.up.len(), 4, "EC keeps positions");
        assert!(!e.up.contains(&victim));
    }
}

#[test]
fn garbage_map_bytes_are_errors() {
    let bytes = base_map().encode();
    for cut in [0, 3, bytes.len() / 3, bytes.len() - 1] {
        assert!(OsdMap::decode(&bytes[..cut]).is_err());
    }
    assert!(OsdMapIncremental::decode(b"not an incremental at all").is_err());
}
