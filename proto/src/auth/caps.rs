//! Capability strings, parsed and checked: `allow *`, `allow r`,
//! `allow rwx`, `allow rw pool=rbd`, `allow r pool=images namespace=ns1`,
//! `allow rw pool rbd` (the old form), `allow rx object_prefix rbd_data`,
//! `profile osd`, `allow profile rbd pool=rbd`; several grants separated
//! by commas or semicolons.
//!
//! Invariant: parsing is bounded and never panics; `parse(print(c)) == c`
//! (a property test checks it).

use super::limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perm {
    pub r: bool,
    pub w: bool,
    pub x: bool,
}

impl Perm {
    pub const READ: Perm = Perm { r: true, w: false, x: false };
    pub const WRITE: Perm = Perm { r: false, w: true, x: false };
    pub const ALL: Perm = Perm { r: true, w: true, x: true };

    fn covers(self, need: Perm) -> bool {
        (!need.r || self.r) && (!need.w || self.w) && (!need.x || self.x)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `allow PERMS [pool=P] [namespace=N] [object_prefix X]`; `*` = all.
    Allow { perm: Perm, star: bool, pool: Option<String>, namespace: Option<String>, object_prefix: Option<String> },
    /// `profile NAME [pool=P]`.
    Profile { name: String, pool: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caps {
    pub grants: Vec<Grant>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapsError {
    #[error("caps of {0} bytes are too long")]
    TooLong(usize),
    #[error("cannot parse grant '{grant}': {why}")]
    Grant { grant: String, why: String },
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= limits::caps_bytes_max && !s.chars().any(|c| c.is_whitespace() || c == ',' || c == ';' || c == '=' || c == '"')
}

impl Caps {
    pub fn parse(s: &str) -> Result<Caps, CapsError> {
        if s.len() > limits::caps_bytes_max {
            return Err(CapsError::TooLong(s.len()));
        }
        let mut grants = Vec::new();
        for part in s.split([',', ';']) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            if grants.len() >= limits::grants_max {
                return Err(CapsError::Grant { grant: part.into(), why: "too many grants".into() });
            }
            grants.push(Self::parse_grant(part)?);
        }
        if grants.is_empty() {
            return Err(CapsError::Grant { grant: s.into(), why: "no grant".into() });
        }
        Ok(Caps { grants })
    }

    fn parse_grant(g: &str) -> Result<Grant, CapsError> {
        let bad = |why: &str| CapsError::Grant { grant: g.to_string(), why: why.to_string() };
        let words: Vec<&str> = g.split_whitespace().collect();
        let mut i = 0;
        let allow = words.first() == Some(&"allow");
        if allow {
            i += 1;
        }
        // Key/value options after the head: `pool=x`, `pool x`, `namespace=n`, `object_prefix p`.
        let parse_opts = |mut i: usize| -> Result<(Option<String>, Option<String>, Option<String>), CapsError> {
            let (mut pool, mut ns, mut prefix) = (None, None, None);
            while i < words.len() {
                let (k, v, step) = match words[i].split_once('=') {
                    Some((k, v)) => (k, v.to_string(), 1),
                    None => (words[i], words.get(i + 1).map(|s| s.to_string()).ok_or_else(|| bad("option without value"))?, 2),
                };
                let v = v.trim_matches('"').to_string();
                if !ident_ok(&v) {
                    return Err(bad("bad option value"));
                }
                match k {
                    "pool" if pool.is_none() => pool = Some(v),
                    "namespace" if ns.is_none() => ns = Some(v),
                    "object_prefix" if prefix.is_none() => prefix = Some(v),
                    _ => return Err(bad("unknown or repeated option")),
                }
                i += step;
            }
            Ok((pool, ns, prefix))
        };
        match words.get(i) {
            Some(&"profile") => {
                let name = words.get(i + 1).ok_or_else(|| bad("profile without a name"))?;
                if !ident_ok(name) {
                    return Err(bad("bad profile name"));
                }
                let (pool, ns, prefix) = parse_opts(i + 2)?;
                if ns.is_some() || prefix.is_some() {
                    return Err(bad("a profile takes only pool="));
                }
                Ok(Grant::Profile { name: name.to_string(), pool })
            }
            Some(p) if allow => {
                let (perm, star) = if *p == "*" {
                    (Perm::ALL, true)
                } else {
                    let mut perm = Perm::default();
                    for c in p.chars() {
                        match c {
                            'r' if !perm.r => perm.r = true,
                            'w' if !perm.w => perm.w = true,
                            'x' if !perm.x => perm.x = true,
                            _ => return Err(bad("permissions are some of r, w, x, or *")),
                        }
                    }
                    (perm, false)
                };
                let (pool, namespace, object_prefix) = parse_opts(i + 1)?;
                Ok(Grant::Allow { perm, star, pool, namespace, object_prefix })
            }
            _ => Err(bad("expected 'allow' or 'profile'")),
        }
    }

    pub fn print(&self) -> String {
        let mut parts = Vec::new();
        for g in &self.grants {
            let mut s = String::new();
            match g {
                Grant::Allow { perm, star, pool, namespace, object_prefix } => {
                    s.push_str("allow ");
                    if *star {
                        s.push('*');
                    } else {
                        if perm.r {
                            s.push('r');
                        }
                        if perm.w {
                            s.push('w');
                        }
                        if perm.x {
                            s.push('x');
                        }
                    }
                    if let Some(p) = pool {
                        s.push_str(&format!(" pool={p}"));
                    }
                    if let Some(n) = namespace {
                        s.push_str(&format!(" namespace={n}"));
                    }
                    if let Some(o) = object_prefix {
                        s.push_str(&format!(" object_prefix {o}"));
                    }
                }
                Grant::Profile { name, pool } => {
                    s.push_str(&format!("profile {name}"));
                    if let Some(p) = pool {
                        s.push_str(&format!(" pool={p}"));
                    }
                }
            }
            parts.push(s);
        }
        parts.join(", ")
    }

    /// May this entity do `need` on `service` (for the OSD: in `pool`,
    /// `namespace`, on `object`)?
    pub fn allows(&self, service: &str, pool: Option<&str>, namespace: &str, object: &str, need: Perm) -> bool {
        self.grants.iter().any(|g| match g {
            Grant::Allow { perm, star, pool: gp, namespace: gn, object_prefix } => {
                (*star || perm.covers(need))
                    && gp.as_deref().is_none_or(|p| Some(p) == pool)
                    && gn.as_deref().is_none_or(|n| n == namespace)
                    && object_prefix.as_deref().is_none_or(|x| object.starts_with(x))
            }
            Grant::Profile { name, pool: gp } => {
                let pool_ok = gp.as_deref().is_none_or(|p| Some(p) == pool);
                match (name.as_str(), service) {
                    // Daemons may do everything their role needs.
                    ("osd" | "mon" | "mgr" | "admin", _) => true,
                    // Block-device clients: read the maps, full I/O on their pool.
                    ("rbd" | "client", "mon") => !need.w && !need.x,
                    ("rbd" | "client", _) => pool_ok,
                    ("rbd-read-only", "osd") => pool_ok && !need.w,
                    ("rbd-read-only", _) => !need.w && !need.x,
                    _ => false,
                }
            }
        })
    }
}
