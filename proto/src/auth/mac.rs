//! The per-frame MAC after authentication: HMAC-SHA256 with the session
//! key, truncated to 16 bytes, over header, body and data (without copying
//! them together); checked in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::frame::{FrameMac, MAC_BYTES};

/// A session key: shared by a client and a service for one ticket's life.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub fn generate() -> SessionKey {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).expect("the OS random source failed");
        SessionKey(k)
    }

    fn hmac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

impl FrameMac for SessionKey {
    fn frame_mac(&self, parts: &[&[u8]]) -> [u8; MAC_BYTES] {
        self.hmac(parts)[..MAC_BYTES].try_into().expect("16 bytes")
    }

    fn verify_frame_mac(&self, parts: &[&[u8]], tag: &[u8; MAC_BYTES]) -> bool {
        self.frame_mac(parts).ct_eq(tag).into()
    }
}

/// HMAC-SHA256 of `parts` under `key` (tickets and proofs use it too).
pub fn hmac32(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}
