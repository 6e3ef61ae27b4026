//! GF(2^8) with ISA-L's reducing polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d).
//!
//! 2 generates the multiplicative group, as in ISA-L's log/exp tables.
//! Addition is XOR. `inv(0)` is 0, as ISA-L's `gf_inv` returns.
//! All tables are computed at compile time.

/// The reducing polynomial, bit 8 included.
pub const POLY: u16 = 0x11d;

/// Multiplies by x (i.e. by 2) and reduces.
const fn mul2(a: u8) -> u8 {
    let s = (a as u16) << 1;
    if s & 0x100 != 0 {
        (s ^ POLY) as u8
    } else {
        s as u8
    }
}

/// Carry-less multiply with reduction, bit by bit: the definition the
/// tables are built from.
const fn mul_slow(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        a = mul2(a);
        b >>= 1;
    }
    r
}

const fn build_exp() -> [u8; 512] {
    let mut t = [0u8; 512];
    let mut x = 1u8;
    let mut i = 0;
    while i < 512 {
        t[i] = x;
        x = mul2(x);
        i += 1;
    }
    t
}

const fn build_log() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut x = 1u8;
    let mut i = 0;
    while i < 255 {
        t[x as usize] = i as u8;
        x = mul2(x);
        i += 1;
    }
    t
}

const fn build_mul() -> [[u8; 256]; 256] {
    let mut t = [[0u8; 256]; 256];
    let mut a = 0;
    while a < 256 {
        let mut b = 0;
        while b < 256 {
            t[a][b] = mul_slow(a as u8, b as u8);
            b += 1;
        }
        a += 1;
    }
    t
}

/// `EXP[i] = 2^i`, doubled in length so `EXP[log a + log b]` needs no mod.
pub static EXP: [u8; 512] = build_exp();
/// `LOG[a]` for a != 0 (`LOG[0]` is unused and 0).
pub static LOG: [u8; 256] = build_log();
/// `MUL[a][b] = a * b`: 64 KiB, used by the scalar kernel (row `MUL[c]` is
/// the 256-byte lookup table for multiplying by the constant c).
pub static MUL: [[u8; 256]; 256] = build_mul();

/// Product of two field elements.
#[inline]
pub fn mul(a: u8, b: u8) -> u8 {
    MUL[a as usize][b as usize]
}

/// Multiplicative inverse; 0 for 0 (ISA-L's convention).
#[inline]
pub fn inv(a: u8) -> u8 {
    if a == 0 {
        0
    } else {
        EXP[255 - LOG[a as usize] as usize]
    }
}

/// `a` raised to the power `e`.
pub fn pow(a: u8, e: u32) -> u8 {
    if e == 0 {
        return 1;
    }
    if a == 0 {
        return 0;
    }
    EXP[((LOG[a as usize] as u64 * e as u64) % 255) as usize]
}

/// The 8x8 bit matrix of "multiply by c" in the layout of x86's
/// `gf2p8affineqb`: byte `7 - i` of the qword selects the input bits whose
/// XOR is output bit i. Output bit i of c*x is the XOR, over the set bits j of
/// x, of bit i of c * 2^j.
pub fn gfni_matrix(c: u8) -> u64 {
    let mut cols = [0u8; 8]; // cols[j] = c * 2^j
    let mut p = c;
    for col in cols.iter_mut() {
        *col = p;
        p = mul2(p);
    }
    let mut m = 0u64;
    for i in 0..8 {
        let mut row = 0u8;
        for (j, col) in cols.iter().enumerate() {
            if col >> i & 1 != 0 {
                row |= 1 << j;
            }
        }
        m |= (row as u64) << (8 * (7 - i));
    }
    m
}

/// The two 16-entry tables of the nibble method (ISA-L's `gf_vect_mul_init`
/// layout): `lo[i] = c * i`, `hi[i] = c * (i << 4)`, so that
/// `c * x = lo[x & 15] ^ hi[x >> 4]`.
pub fn nibble_tables(c: u8) -> ([u8; 16], [u8; 16]) {
    let mut lo = [0u8; 16];
    let mut hi = [0u8; 16];
    for i in 0..16u8 {
        lo[i as usize] = mul(c, i);
        hi[i as usize] = mul(c, i << 4);
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_checks_from_isal() {
        assert_eq!(mul(0x80, 0x02), 0x1d);
        assert_eq!(mul(0x02, 0x8e), 0x01);
        assert_eq!(inv(0), 0);
    }

    #[test]
    fn field_axioms() {
        for a in 0..=255u8 {
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
            if a != 0 {
                assert_eq!(mul(a, inv(a)), 1, "a={a}");
            }
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), mul(b, a));
                if a != 0 && b != 0 {
                    let l = (LOG[a as usize] as usize + LOG[b as usize] as usize) % 255;
                    assert_eq!(mul(a, b), EXP[l]);
                }
            }
        }
        // 2 generates the whole group: 2^i for i < 255 are distinct.
        let mut seen = [false; 256];
        for &e in &EXP[..255] {
            assert!(!seen[e as usize]);
            seen[e as usize] = true;
        }
        assert_eq!(pow(2, 255), 1);
        assert_eq!(pow(3, 0), 1);
    }

    #[test]
    fn gfni_matrix_applied_bitwise_is_multiplication() {
        // Apply the matrix exactly as gf2p8affineqb defines it.
        for c in 0..=255u8 {
            let a = gfni_matrix(c);
            for x in 0..=255u8 {
                let mut out = 0u8;
                for i in 0..8 {
                    let row = (a >> (8 * (7 - i))) as u8;
                    out |= (((row & x).count_ones() & 1) as u8) << i;
                }
                assert_eq!(out, mul(c, x), "c={c} x={x}");
            }
        }
    }

    #[test]
    fn nibble_tables_multiply() {
        for c in 0..=255u8 {
            let (lo, hi) = nibble_tables(c);
            for x in 0..=255u8 {
                assert_eq!(lo[(x & 15) as usize] ^ hi[(x >> 4) as usize], mul(c, x));
            }
        }
    }
}
