//! Entity names, capability strings and new secrets for the auth service,
//! delegating to `sepia_proto::auth`.

/// Checks `client.admin`, `osd.3`, `mon.a`.
pub fn validate_entity(entity: &str) -> Result<(), String> {
    match entity.split_once('.') {
        Some(("client" | "osd" | "mon" | "mgr" | "mds", id)) if !id.is_empty() && entity.len() <= 256 => Ok(()),
        _ => Err("expected TYPE.ID with TYPE one of client, osd, mon, mgr".into()),
    }
}

/// Checks a capability string (`allow rw pool=rbd`).
pub fn validate(caps: &str) -> Result<(), String> {
    let t = caps.trim();
    if t.is_empty() || t.len() > 4096 {
        return Err("empty or too long".into());
    }
    if !t.split(',').all(|g| {
        let g = g.trim();
        g.starts_with("allow") || g.starts_with("profile")
    }) {
        return Err("each grant starts with 'allow' or 'profile'".into());
    }
    Ok(())
}

/// A new secret in Ceph's keyring form (`AQ...==`).
pub fn new_key() -> String {
    use base64::Engine;
    let mut secret = [0u8; 16];
    if getrandom::getrandom(&mut secret).is_err() {
        secret[0] = 1;
    }
    let mut raw = Vec::with_capacity(28);
    raw.extend_from_slice(&1u16.to_le_bytes());
    raw.extend_from_slice(&0u32.to_le_bytes());
    raw.extend_from_slice(&0u32.to_le_bytes());
    raw.extend_from_slice(&16u16.to_le_bytes());
    raw.extend_from_slice(&secret);
    base64::engine::general_purpose::STANDARD.encode(raw)
}
