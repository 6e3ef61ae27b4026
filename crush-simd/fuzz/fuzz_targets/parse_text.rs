//! Fuzzes the text map parser: any bytes (read as lossy UTF-8) must give a
//! map or a `ParseError`, never a panic; a parsed map's printed text must
//! parse again, and printing settles after that round (print∘parse is
//! idempotent on printed text).
//!
//! Two Ceph behaviours keep one round from always being enough, and both are
//! reproduced on purpose: a weight of 32768 or more prints negative
//! (`(float)(int)w`), which no compiler reads back; and class ids are given
//! in order of first use, so a class that only a bucket's `id N class C`
//! line still names (its device was renamed by a repeated device id) moves
//! after the device classes when the printed text is read back.
#![no_main]

use crush_simd::text::{parse, print};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(map) = parse(&text) else { return };
    map.invariants();
    let once = print(&map);
    match parse(&once) {
        Ok(again) => {
            let twice = print(&again);
            let thrice = print(&parse(&twice).expect("second print must parse"));
            assert_eq!(thrice, twice, "print is not idempotent");
        }
        Err(e) => assert!(once.contains(" weight -"), "printed map does not parse: {e}\n{once}"),
    }
});
