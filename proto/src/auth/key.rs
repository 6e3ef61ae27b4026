//! Secret keys in Ceph's form: the keyring's `key = AQ...==` is base64 of
//! (u16 type = 1 (AES), u32 created seconds, u32 nanoseconds, u16 length =
//! 16, the 16 secret bytes), little-endian — so keys made by `ceph-authtool`
//! work here and ours work there.

use base64::Engine;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub bytes: [u8; 16],
    pub created_sec: u32,
    pub created_nsec: u32,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is not valid base64")]
    Base64,
    #[error("key has {0} bytes, expected 28")]
    Length(usize),
    #[error("key type {0} is not AES (1)")]
    Type(u16),
}

impl Secret {
    /// A new random secret.
    pub fn generate(now_sec: u32) -> Secret {
        let mut bytes = [0u8; 16];
        // Without entropy we must not hand out a guessable key.
        getrandom::getrandom(&mut bytes).expect("the OS random source failed");
        Secret { bytes, created_sec: now_sec, created_nsec: 0 }
    }

    pub fn to_keyring_string(&self) -> String {
        let mut raw = Vec::with_capacity(28);
        raw.extend_from_slice(&1u16.to_le_bytes());
        raw.extend_from_slice(&self.created_sec.to_le_bytes());
        raw.extend_from_slice(&self.created_nsec.to_le_bytes());
        raw.extend_from_slice(&16u16.to_le_bytes());
        raw.extend_from_slice(&self.bytes);
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    pub fn from_keyring_string(s: &str) -> Result<Secret, KeyError> {
        if s.len() > 64 {
            return Err(KeyError::Length(s.len()));
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|_| KeyError::Base64)?;
        if raw.len() != 28 {
            return Err(KeyError::Length(raw.len()));
        }
        let u16_at = |i: usize| u16::from_le_bytes([raw[i], raw[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        if u16_at(0) != 1 {
            return Err(KeyError::Type(u16_at(0)));
        }
        if u16_at(10) != 16 {
            return Err(KeyError::Length(u16_at(10) as usize));
        }
        Ok(Secret { bytes: raw[12..28].try_into().expect("16 bytes"), created_sec: u32_at(2), created_nsec: u32_at(6) })
    }
}
