//! Object → PG and PG → raw/up/acting sets, checked against vectors that
//! Ceph's own `osdmaptool` produced (`scripts/gen-pg-vectors.sh`).

use std::path::PathBuf;

use sepia_proto::osdmap::{OsdInfo, OsdMap, PgId, Pool, PoolKind, OSD_IN, OSD_OUT, POOL_FLAG_HASHPSPOOL};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(vectors().join(name)).unwrap()
}

/// `pool 1 'rbd' replicated size 3 min_size 2 crush_rule 0 ... pg_num 640 pgp_num 320 ... flags hashpspool`
fn parse_pool(line: &str) -> Pool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| -> u32 {
        let i = words.iter().position(|w| *w == key).unwrap();
        words[i + 1].parse().unwrap()
    };
    Pool {
        id: words[1].parse().unwrap(),
        name: words[2].trim_matches('\'').to_string(),
        kind: PoolKind::Replicated,
        size: after("size"),
        min_size: after("min_size"),
        pg_num: after("pg_num"),
        pgp_num: after("pgp_num"),
        crush_rule: after("crush_rule") as i32,
        flags: if line.contains("hashpspool") { POOL_FLAG_HASHPSPOOL } else { 0 },
        quota_max_bytes: 0,
        quota_max_objects: 0,
    }
}

fn big_map(out: Option<i32>) -> OsdMap {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/crush/hosts8x4.txt"))
        .or_else(|_| std::fs::read_to_string("/work/shared/fixtures/crush/hosts8x4.txt"))
        .unwrap();
    let crush = crush_simd::text::parse(&text).unwrap();
    let mut map = OsdMap::new([0; 16], crush, 0);
    // osdmaptool --createsimple 40: 40 OSDs, marked up and in.
    for id in 0..40 {
        map.osds.push(OsdInfo {
            id,
            uuid: [0; 16],
            exists: true,
            up: true,
            weight: if Some(id) == out { OSD_OUT } else { OSD_IN },
            addrs: vec!["127.0.0.1:6800".into()],
            up_from: 1,
            down_at: 0,
            lost_at: 0,
        });
    }
    let pool = parse_pool(read("pool-big.txt").trim());
    map.pools.insert(pool.id, pool);
    map
}

/// `[28,20,13], p28` → (set, primary)
fn parse_set(s: &str) -> (Vec<i32>, Option<i32>) {
    let (set, primary) = s.split_once("], p").unwrap();
    let set = set.trim_start_matches('[');
    let osds = if set.is_empty() { Vec::new() } else { set.split(',').map(|o| o.parse().unwrap()).collect() };
    let p: i32 = primary.parse().unwrap();
    (osds, (p >= 0).then_some(p))
}

fn check_pg_dump(map: &OsdMap, file: &str) {
    let mut checked = 0;
    for line in read(file).lines() {
        // 1.0 raw ([28,20,13], p28) up ([28,20,13], p28) acting ([28,20,13], p28)
        let (pgid, rest) = line.split_once(' ').unwrap();
        let (pool, seed) = pgid.split_once('.').unwrap();
        let pg = PgId { pool: pool.parse().unwrap(), seed: u32::from_str_radix(seed, 16).unwrap() };
        let parts: Vec<&str> = rest.split(['(', ')']).collect();
        // parts: ["raw ", "[..], pN", " up ", "[..], pN", " acting ", "[..], pN", ""]
        let (raw, _) = parse_set(parts[1]);
        let (up, up_primary) = parse_set(parts[3]);
        let (acting, acting_primary) = parse_set(parts[5]);
        let placed = map.pg_placement(pg).unwrap();
        assert_eq!(raw, up, "{file}: all OSDs are up, so raw == up");
        assert_eq!(placed.up, up, "{file}: up set of {pg}");
        assert_eq!(placed.up_primary, up_primary, "{file}: up primary of {pg}");
        assert_eq!(placed.acting, acting, "{file}: acting set of {pg}");
        assert_eq!(placed.acting_primary, acting_primary, "{file}: acting primary of {pg}");
        checked += 1;
    }
    assert_eq!(checked, 640);
}

#[test]
fn pg_sets_match_osdmaptool() {
    check_pg_dump(&big_map(None), "pgs-big-allin.txt");
}

#[test]
fn pg_sets_match_osdmaptool_with_an_out_osd() {
    check_pg_dump(&big_map(Some(5)), "pgs-big-out5.txt");
}

fn check_objects(file: &str, pool_file: &str, map: Option<&OsdMap>) {
    let names = read("object-names.txt");
    let lines = read(file);
    let pool = parse_pool(read(pool_file).trim());
    let mut checked = 0;
    for (name, line) in names.lines().zip(lines.lines()) {
        // " object 'NAME' -> 1.1e2 -> [6,2,18]"
        let expected_prefix = format!(" object '{name}' -> ");
        let rest = line.strip_prefix(&expected_prefix).unwrap_or_else(|| panic!("{line:?} is not about {name:?}"));
        let (pgid, set) = rest.split_once(" -> ").unwrap();
        let pg = pool.object_pg(name, None, "");
        assert_eq!(pg.to_string(), pgid, "object {name:?}");
        if let Some(map) = map {
            let set = set.trim_matches(['[', ']']);
            let acting: Vec<i32> = if set.is_empty() { Vec::new() } else { set.split(',').map(|o| o.parse().unwrap()).collect() };
            assert_eq!(map.pg_placement(pg).unwrap().acting, acting, "object {name:?} in {pg}");
        }
        checked += 1;
    }
    assert_eq!(checked, names.lines().count());
}

#[test]
fn object_to_pg_matches_osdmaptool_pg_num_384() {
    check_objects("objects-small.txt", "pool-small.txt", None);
}

#[test]
fn object_to_pg_and_acting_set_match_osdmaptool_pg_num_640_pgp_320() {
    check_objects("objects-big.txt", "pool-big.txt", Some(&big_map(None)));
}

#[test]
fn down_osds_leave_the_up_set_and_the_primary_moves() {
    let mut map = big_map(None);
    let pg = PgId { pool: 1, seed: 0 };
    let before = map.pg_placement(pg).unwrap();
    let primary = before.up_primary.unwrap();
    map.osds[primary as usize].up = false;
    let after = map.pg_placement(pg).unwrap();
    let expected: Vec<i32> = before.up.iter().copied().filter(|&o| o != primary).collect();
    assert_eq!(after.up, expected);
    assert_eq!(after.up_primary, expected.first().copied());
    // pg_temp overrides the acting set; primary_temp the primary.
    map.pg_temp.insert(pg, vec![7, 8, primary]);
    map.primary_temp.insert(pg, 8);
    let temp = map.pg_placement(pg).unwrap();
    assert_eq!(temp.up, expected, "pg_temp never changes the up set");
    assert_eq!(temp.acting, vec![7, 8], "down members of pg_temp are dropped");
    assert_eq!(temp.acting_primary, Some(8));
}
