//! Entity names, capability strings and new secrets for the auth service,
//! delegating to `sepia_proto::auth`.

use sepia_proto::auth::caps::Caps;
use sepia_proto::auth::entity::EntityName;
use sepia_proto::auth::key::Secret;

/// Checks `client.admin`, `osd.3`, `mon.a`.
pub fn validate_entity(entity: &str) -> Result<(), String> {
    EntityName::parse(entity).map(|_| ()).map_err(|e| e.to_string())
}

/// Checks a capability string (`allow rw pool=rbd`).
pub fn validate(caps: &str) -> Result<(), String> {
    Caps::parse(caps).map(|_| ()).map_err(|e| e.to_string())
}

/// A new secret in Ceph's keyring form (`AQ...==`).
pub fn new_key() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
    Secret::generate(now).to_keyring_string()
}
