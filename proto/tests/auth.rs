//! Auth: Ceph's keyrings (made by `ceph-authtool`) round trip, capability
//! strings parse and check, and the ticket exchange works end to end —
//! and fails for every kind of forgery.

use proptest::prelude::*;
use sepia_proto::auth::caps::{Caps, Grant, Perm};
use sepia_proto::auth::entity::EntityName;
use sepia_proto::auth::key::Secret;
use sepia_proto::auth::keyring::Keyring;
use sepia_proto::auth::mac::SessionKey;
use sepia_proto::auth::ticket::{self, AuthError, ServiceKeys, Ticket};
use sepia_proto::frame::FrameMac;

fn fixture() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/auth_fixtures/ceph.keyring")).unwrap()
}

#[test]
fn ceph_authtool_keyring_round_trips() {
    let text = fixture();
    let ring = Keyring::parse(&text).unwrap();
    assert_eq!(ring.entries.len(), 3);
    let admin = ring.get(&EntityName::parse("client.admin").unwrap()).unwrap();
    assert_eq!(admin.caps["mon"], "allow *");
    let rbd = ring.get(&EntityName::parse("client.rbd").unwrap()).unwrap();
    assert_eq!(rbd.caps["osd"], "allow rwx pool=rbd, allow r pool=images namespace=ns1");
    // Printed back exactly as ceph-authtool wrote it (same order, same form).
    assert_eq!(ring.print(), text);
    // Keys keep their bytes through our encoding.
    for e in ring.entries.values() {
        assert_eq!(Secret::from_keyring_string(&e.key.to_keyring_string()).unwrap(), e.key);
    }
}

#[test]
fn bad_keyrings_are_errors_with_line_numbers() {
    for (text, line) in [
        ("[client.admin]\nkey = notbase64!!\n", 2),
        ("key = AQC2IwZrjaejCBAAeh1Sg/n7+lcpHyyn09OdXA==\n", 1),
        ("[nonsense]\n", 1),
        ("[client.a]\n\tcaps mon = \"allow *\"\n", 2),
        ("[client.a]\ngarbage\n", 2),
    ] {
        match Keyring::parse(text) {
            Err(sepia_proto::auth::keyring::KeyringError::Line { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn caps_parse_and_decide() {
    let c = Caps::parse("allow rwx pool=rbd, allow r pool=images namespace=ns1").unwrap();
    assert!(c.allows("osd", Some("rbd"), "", "obj", Perm::ALL));
    assert!(c.allows("osd", Some("images"), "ns1", "obj", Perm::READ));
    assert!(!c.allows("osd", Some("images"), "ns1", "obj", Perm::WRITE));
    assert!(!c.allows("osd", Some("images"), "other", "obj", Perm::READ));
    assert!(!c.allows("osd", Some("data"), "", "obj", Perm::READ));
    let star = Caps::parse("allow *").unwrap();
    assert!(star.allows("mon", None, "", "", Perm::ALL));
    let old = Caps::parse("allow rw pool rbd").unwrap();
    assert_eq!(old, Caps::parse("allow rw pool=rbd").unwrap());
    let prefix = Caps::parse("allow rx object_prefix rbd_data").unwrap();
    assert!(prefix.allows("osd", Some("x"), "", "rbd_data.1", Perm::READ));
    assert!(!prefix.allows("osd", Some("x"), "", "other", Perm::READ));
    let prof = Caps::parse("profile rbd pool=rbd").unwrap();
    assert!(prof.allows("osd", Some("rbd"), "", "o", Perm::ALL));
    assert!(!prof.allows("osd", Some("vms"), "", "o", Perm::READ));
    assert!(Caps::parse("allow profile osd").unwrap().allows("mon", None, "", "", Perm::ALL));
    for bad in ["", "deny r", "allow", "allow rq", "allow rr", "allow r pool", "allow r pool=a pool=b", "allow r color=red", "profile"] {
        assert!(Caps::parse(bad).is_err(), "{bad:?}");
    }
}

fn grant() -> impl Strategy<Value = Grant> {
    let name = "[a-z][a-z0-9_.-]{0,8}";
    prop_oneof![
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), proptest::option::of(name), proptest::option::of(name), proptest::option::of(name))
            .prop_filter("some permission", |(r, w, x, star, ..)| *star || *r || *w || *x)
            .prop_map(|(r, w, x, star, pool, namespace, object_prefix)| Grant::Allow {
                perm: if star { Perm::ALL } else { Perm { r, w, x } },
                star,
                pool,
                namespace,
                object_prefix
            }),
        (name, proptest::option::of(name)).prop_map(|(name, pool)| Grant::Profile { name, pool }),
    ]
}

proptest! {
    #[test]
    fn caps_print_parse_round_trip(grants in proptest::collection::vec(grant(), 1..5)) {
        let caps = Caps { grants };
        prop_assert_eq!(Caps::parse(&caps.print()).unwrap(), caps);
    }

    #[test]
    fn random_caps_and_keyrings_never_panic(s in "[ -~\\n\\t]{0,200}") {
        let _ = Caps::parse(&s);
        let _ = Keyring::parse(&s);
        let _ = EntityName::parse(&s);
        let _ = Secret::from_keyring_string(&s);
    }
}

#[test]
fn tickets_end_to_end_and_every_forgery_fails() {
    let ring = Keyring::parse(&fixture()).unwrap();
    let who = EntityName::parse("client.rbd").unwrap();
    let secret = ring.get(&who).unwrap().key.clone();
    // 1. Challenge / response.
    let (cc, sc) = (0x1111, 0x2222);
    let p = ticket::proof(&secret, sc, cc);
    ticket::verify_proof(&secret, sc, cc, &p).unwrap();
    assert_eq!(ticket::verify_proof(&secret, sc + 1, cc, &p), Err(AuthError::BadProof));
    let other = Secret::generate(0);
    assert_eq!(ticket::verify_proof(&other, sc, cc, &p), Err(AuthError::BadProof));
    // 2. The monitor issues an OSD ticket and the session key.
    let mut osd_keys = ServiceKeys::new(1, [7; 32]);
    let session = SessionKey::generate();
    let t = Ticket {
        entity: who.clone(),
        global_id: 4242,
        service: "osd".into(),
        caps: ring.get(&who).unwrap().caps.clone(),
        session_key: session.0,
        valid_from_ms: 1_000,
        expires_ms: 3_601_000,
    };
    let sealed = ticket::seal_ticket(&t, &osd_keys, ticket::random_nonce());
    let for_client = ticket::seal_session_key(&secret, &session, ticket::random_nonce());
    let client_session = ticket::open_session_key(&secret, &for_client).unwrap();
    assert_eq!(client_session, session);
    assert_eq!(ticket::open_session_key(&other, &for_client), Err(AuthError::BadSeal));
    // 3. The client shows the OSD an authorizer; the OSD checks it alone.
    let auth = ticket::build_authorizer(&sealed, &client_session, 7, 99, 10_000);
    let seen = ticket::verify_authorizer(&auth, &osd_keys, "osd", 7, 10_500, 5_000).unwrap();
    assert_eq!((seen.entity, seen.global_id), (who.clone(), 4242));
    assert!(Caps::parse(&seen.caps["osd"]).unwrap().allows("osd", Some("rbd"), "", "x", Perm::ALL));
    // Both sides now MAC frames identically.
    let parts: [&[u8]; 3] = [b"header", b"body", b"data"];
    let osd_side = SessionKey(seen.session_key);
    assert!(osd_side.verify_frame_mac(&parts, &client_session.frame_mac(&parts)));
    assert!(!osd_side.verify_frame_mac(&[b"header", b"body", b"DATA"], &client_session.frame_mac(&parts)));
    // Forgeries and staleness.
    assert!(matches!(ticket::verify_authorizer(&auth, &osd_keys, "osd", 7, 3_700_000, 5_000), Err(AuthError::Expired { .. })));
    assert_eq!(ticket::verify_authorizer(&auth, &osd_keys, "osd", 7, 100_000, 5_000), Err(AuthError::Replay));
    assert!(matches!(ticket::verify_authorizer(&auth, &osd_keys, "mon", 7, 10_500, 5_000), Err(AuthError::WrongService { .. })));
    let mut tampered = auth.clone();
    tampered.ticket.blob[5] ^= 1;
    assert_eq!(ticket::verify_authorizer(&tampered, &osd_keys, "osd", 7, 10_500, 5_000), Err(AuthError::BadSeal));
    let mut wrong_mac = auth.clone();
    wrong_mac.mac[0] ^= 1;
    assert_eq!(ticket::verify_authorizer(&wrong_mac, &osd_keys, "osd", 7, 10_500, 5_000), Err(AuthError::BadMac));
    let stolen_ticket = ticket::build_authorizer(&sealed, &SessionKey::generate(), 7, 100, 10_000);
    assert_eq!(ticket::verify_authorizer(&stolen_ticket, &osd_keys, "osd", 7, 10_500, 5_000), Err(AuthError::BadMac), "a ticket without its session key is useless");
    // An authorizer copied off one connection is refused on another: the
    // other connection's challenge differs.
    assert_eq!(ticket::verify_authorizer(&auth, &osd_keys, "osd", 8, 10_500, 5_000), Err(AuthError::BadMac), "replayed on another connection");
    // Rotation: the previous key still opens, two rotations later it does not.
    osd_keys.rotate([8; 32]);
    assert!(ticket::verify_authorizer(&auth, &osd_keys, "osd", 7, 10_500, 5_000).is_ok());
    osd_keys.rotate([9; 32]);
    assert_eq!(ticket::verify_authorizer(&auth, &osd_keys, "osd", 7, 10_500, 5_000), Err(AuthError::UnknownGeneration(1)));
}
