use crush_simd::text::{parse, print};
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/crush");
#[test]
fn roundtrip() {
    for name in ["flat", "hosts8x4", "racks", "legacy_algs", "classes", "sparse", "big"] {
        let txt = std::fs::read_to_string(format!("{DIR}/{name}.txt")).unwrap();
        let map = parse(&txt).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = print(&map);
        if out != txt {
            std::fs::write(format!("/tmp/ct/{name}.out"), &out).unwrap();
            panic!("{name} differs");
        }
    }
}
