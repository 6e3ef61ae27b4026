//! Fuzzes the text map parser: any bytes (read as lossy UTF-8) must give a
//! map or a `ParseError`, never a panic; a parsed map must print to text
//! that parses back to a map printing the same (the decompiled form is a
//! fixed point).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(map) = crush_simd::text::parse(&text) {
        map.invariants();
        let printed = crush_simd::text::print(&map);
        let again = crush_simd::text::parse(&printed).expect("printed map must parse");
        assert_eq!(crush_simd::text::print(&again), printed, "print is not a fixed point");
    }
});
