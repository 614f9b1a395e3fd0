//! Storage on SQLite and PostgreSQL: the same tests against both backends (issue 2).

use ucm::config;
use ucm::services::em::store::{self as em_store, EmStore};
use ucm::services::paging::store::PageReports;
use ucm::services::phone_services::store::Lockouts;
use ucm::store::{self, Backend, Store};

use crate::common::PgDb;

fn hashed_demo() -> config::ClusterDefinition {
    let mut d = ucm::services::demo().unwrap_or_else(|e| panic!("{e}"));
    config::hash_secrets(&mut d);
    // A TLS trunk with a name for destination and its own trust (issue 3) round-trips too.
    d.sip_trunks.push(config::model::SipTrunk {
        name: "TLS-GW".into(),
        destinations: vec!["gw.example.com:5061".into(), "127.0.0.1:5061".into()],
        transport: config::model::SipTransport::Tls,
        device_pool: d.sip_trunks[0].device_pool.clone(),
        css: None,
        location: None,
        tls_ca: Some(trunk_ca().display().to_string()),
        tls_server_name: Some("gw.example.com".into()),
    });
    d
}

/// A CA file that lives as long as the test binary (exports are parsed, and checked, again).
fn trunk_ca() -> &'static std::path::Path {
    static CA: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    let (_, path) = CA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        (dir, path)
    });
    path
}

/// Import, load, export; import the export; export again: the same YAML.
async fn round_trip(store: &Store) {
    let def = hashed_demo();
    assert!(
        store.load().await.unwrap().is_none(),
        "fresh database is empty"
    );
    store.import(&def, "d1", "demo").await.unwrap();
    let loaded = store.load().await.unwrap().expect("stored definition");
    assert_eq!(loaded, def, "load gives back what was imported");
    let first = config::to_yaml(&loaded).unwrap();
    assert!(first.contains("tls_server_name: gw.example.com"), "{first}");
    // The export is a valid definition, with secrets as hashes, never in clear.
    assert!(
        !first.contains("password: cisco"),
        "clear password in export"
    );
    assert!(
        first.contains("password_hash: $argon2id$"),
        "hashes are exported:\n{first}"
    );
    let again = ucm::services::parse_str(&first, "export.yaml").unwrap_or_else(|e| panic!("{e}"));
    store.import(&again, "d2", "export.yaml").await.unwrap();
    let second = config::to_yaml(&store.load().await.unwrap().unwrap()).unwrap();
    assert_eq!(first, second, "export -> import -> export is stable");
    assert_eq!(
        store.definition_digest().await.unwrap().as_deref(),
        Some("d2")
    );
    // The hashes verify the demo's secrets.
    let jsmith = loaded
        .end_users
        .iter()
        .find(|u| u.userid == "jsmith")
        .unwrap();
    assert!(ucm::auth::verify_secret(
        "cisco",
        jsmith.password_hash.as_deref().unwrap()
    ));
    assert!(ucm::auth::verify_secret(
        "12345",
        jsmith.pin_hash.as_deref().unwrap()
    ));
}

#[tokio::test]
async fn r2_round_trip_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("ucm.db").display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    round_trip(&store).await;
    store.close().await;
    // Reopening finds the definition (and runs no migration twice).
    let store = Store::open(&url).await.unwrap();
    assert!(store.load().await.unwrap().is_some());
    store.close().await;
}

#[tokio::test]
async fn r2_round_trip_sqlite_memory() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    round_trip(&store).await;
}

#[tokio::test]
async fn r2_round_trip_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    round_trip(&store).await;
    store.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn r2_bad_database_urls_are_refused_clearly() {
    let e = Store::open("mysql://x")
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("expected sqlite:PATH"), "{e}");
    let e = Store::open("postgres://nobody:secret@127.0.0.1:1/none")
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        !e.contains("secret"),
        "password leaked into the message: {e}"
    );
    assert_eq!(
        store::redact("postgres://u:pw@h/db"),
        "postgres://u:***@h/db"
    );
}

/// Lockout counting (issue 5's authentication URL, EM PINs) on one backend: each check is
/// reserved before it runs and counts as a failure until a success clears it.
async fn credential_failures(store: &Store) {
    let c = "password:jsmith";
    assert_eq!(store.credential_failures(c).await.unwrap(), None);
    let f = store
        .reserve_credential_check(c, 100, 3, 60)
        .await
        .unwrap()
        .expect("granted");
    assert_eq!((f.failures, f.locked_until), (1, 0));
    store
        .reserve_credential_check(c, 101, 3, 60)
        .await
        .unwrap()
        .expect("granted");
    // The third check in a row locks for 60 s as it is reserved.
    let f = store
        .reserve_credential_check(c, 102, 3, 60)
        .await
        .unwrap()
        .expect("granted");
    assert_eq!((f.failures, f.locked_until), (3, 162));
    assert_eq!(store.credential_failures(c).await.unwrap(), Some(f));
    // While locked, nothing is granted (and nothing changes).
    assert_eq!(
        store.reserve_credential_check(c, 161, 3, 60).await.unwrap(),
        None
    );
    assert_eq!(store.credential_failures(c).await.unwrap(), Some(f));
    // Once the lock has expired, a new window starts.
    let f = store
        .reserve_credential_check(c, 162, 3, 60)
        .await
        .unwrap()
        .expect("granted");
    assert_eq!((f.failures, f.locked_until), (1, 0));
    store.clear_credential_failures(c).await.unwrap();
    assert_eq!(store.credential_failures(c).await.unwrap(), None);
    // Threshold 1 locks with the first check.
    let f = store
        .reserve_credential_check("pin:a", 5, 1, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((f.failures, f.locked_until), (1, 15));
    // Unlocking forgets the password's and the PIN's records; pruning forgets old unlocked ones.
    store
        .reserve_credential_check("password:a", 5, 5, 10)
        .await
        .unwrap();
    assert_eq!(store.unlock_user("a").await.unwrap(), 2);
    assert_eq!(store.unlock_user("a").await.unwrap(), 0);
    store
        .reserve_credential_check("pin:b", 5, 5, 10)
        .await
        .unwrap();
    store
        .reserve_credential_check("pin:c", 5, 1, 1000)
        .await
        .unwrap();
    assert_eq!(store.prune_credential_failures(6, 6).await.unwrap(), 1);
    assert!(store.credential_failures("pin:c").await.unwrap().is_some());
}

/// 60 concurrent reservations of one credential with a threshold of 5 (each on its own
/// connection where the backend has several): exactly 5 are granted.
async fn parallel_reservations(store: &Store) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let s = store.clone();
        set.spawn(async move {
            s.reserve_credential_check("password:emproxy", 1000, 5, 1800)
                .await
                .unwrap()
                .is_some()
        });
    }
    let mut granted = 0;
    while let Some(r) = set.join_next().await {
        granted += usize::from(r.unwrap());
    }
    assert_eq!(granted, 5, "at most the threshold of checks per window");
}

#[tokio::test]
async fn r15_parallel_checks_are_reserved_atomically_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("ucm.db").display()))
        .await
        .unwrap();
    parallel_reservations(&store).await;
    store.close().await;
}

#[tokio::test]
async fn r15_parallel_checks_are_reserved_atomically_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    parallel_reservations(&store).await;
    store.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn r5_credential_failures_sqlite() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    credential_failures(&store).await;
}

#[tokio::test]
async fn r5_credential_failures_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    credential_failures(&store).await;
    store.close().await;
    db.drop_db().await;
}

fn em_row(device: &str, user: &str) -> em_store::EmLoginRow {
    em_store::EmLoginRow {
        device: device.into(),
        userid: user.into(),
        profile: "p".into(),
        logged_in_at: 1,
        logout_at: None,
        node: "n".into(),
    }
}

/// Logs `user` in on `device` unless they are logged in elsewhere ("not allowed").
async fn em_login_not_allowed(
    store: &Store,
    device: &str,
    user: &str,
) -> Result<Vec<em_store::EmChange>, em_store::EmWrite<String>> {
    store
        .em_login(device, user, |now| {
            match now.of_user.iter().find(|r| r.device != device) {
                Some(r) => Err(format!("logged in on {}", r.device)),
                None => Ok(em_store::EmLoginWrite {
                    row: em_row(device, user),
                    also_logout: Vec::new(),
                }),
            }
        })
        .await
}

/// EM logins (issue 15): the decision sees what is stored under the user's and the device's
/// locks, every change bumps the device's version, a refusal writes nothing.
async fn em_versions_and_decisions(store: &Store) {
    let versions = |s: &[em_store::EmChange]| -> Vec<(String, i64, bool)> {
        s.iter()
            .map(|c| (c.device.clone(), c.version, c.login.is_some()))
            .collect()
    };
    let c = em_login_not_allowed(store, "D1", "u").await.unwrap();
    assert_eq!(versions(&c), [("D1".to_string(), 1, true)]);
    // Refused: nothing written, no version taken.
    let e = em_login_not_allowed(store, "D2", "u").await.unwrap_err();
    assert!(matches!(e, em_store::EmWrite::Refused(ref m) if m == "logged in on D1"));
    // Auto-logout: the decision names the user's other login, both change in one commit.
    let c = store
        .em_login("D2", "u", |now| {
            assert_eq!(now.on_device, None);
            assert_eq!(now.of_user, [em_row("D1", "u")]);
            Ok::<_, String>(em_store::EmLoginWrite {
                row: em_row("D2", "u"),
                also_logout: vec!["D1".into()],
            })
        })
        .await
        .unwrap();
    assert_eq!(
        versions(&c),
        [("D1".to_string(), 2, false), ("D2".to_string(), 1, true)]
    );
    assert_eq!(
        store.em_last_user("D1").await.unwrap().as_deref(),
        Some("u")
    );
    // A logout the decision declines writes nothing; one it accepts bumps the version.
    let none = store.em_logout("D2", |_| Ok::<_, String>(false)).await;
    assert!(matches!(none, Ok(None)));
    let (change, ended) = store
        .em_logout("D2", |r| Ok::<_, String>(r.is_some()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((change.version, change.login), (2, None));
    assert_eq!(ended, em_row("D2", "u"));
    assert!(matches!(
        store
            .em_logout("D2", |r| Ok::<_, String>(r.is_some()))
            .await,
        Ok(None)
    ));
    let states = store.em_states().await.unwrap();
    assert_eq!(
        versions(&states),
        [("D1".to_string(), 2, false), ("D2".to_string(), 2, false)]
    );
    // 20 logins of one user at once on 20 devices, "not allowed": the database lets one in.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { em_login_not_allowed(&s, &format!("X{i:02}"), "w").await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(em_store::EmWrite::Refused(_)) => {}
            Err(em_store::EmWrite::Store(e)) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 1);
    let stored = store.em_logins().await.unwrap();
    assert_eq!(stored.iter().filter(|r| r.userid == "w").count(), 1);
}

#[tokio::test]
async fn r15_em_logins_decided_and_versioned_by_the_database_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("em.db").display()))
        .await
        .unwrap();
    em_versions_and_decisions(&store).await;
    store.close().await;
}

#[tokio::test]
async fn r15_em_logins_decided_and_versioned_by_the_database_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    em_versions_and_decisions(&store).await;
    store.close().await;
    db.drop_db().await;
}

/// The shared look of page-report waiters: which Call-IDs have a report, in one query.
async fn page_report_call_ids(store: &Store) {
    assert!(store.page_report_call_ids(&[]).await.unwrap().is_empty());
    store
        .add_page_report("p1", 1, "call-a", "{}", 100)
        .await
        .unwrap();
    store
        .add_page_report("p2", 2, "call-a", "{}", 100)
        .await
        .unwrap();
    store
        .add_page_report("p3", 3, "call-c", "{}", 100)
        .await
        .unwrap();
    let ids: Vec<String> = ["call-a", "call-b", "call-c"].map(String::from).to_vec();
    let mut found = store.page_report_call_ids(&ids).await.unwrap();
    found.sort();
    assert_eq!(found, vec!["call-a".to_string(), "call-c".to_string()]);
    // As many as the waiters' cap allows, in one statement.
    let many: Vec<String> = (0..ucm::services::paging::waiters::MAX_REPORT_WAITERS)
        .map(|i| format!("x{i}"))
        .chain(["call-c".to_string()])
        .collect();
    assert_eq!(
        store.page_report_call_ids(&many).await.unwrap(),
        vec!["call-c".to_string()]
    );
}

#[tokio::test]
async fn r15_page_report_call_ids_sqlite() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    page_report_call_ids(&store).await;
}

#[tokio::test]
async fn r15_page_report_call_ids_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    page_report_call_ids(&store).await;
    store.close().await;
    db.drop_db().await;
}

fn trusted(store: &str, sha: &str, cluster: &str) -> store::TrustedCertificate {
    store::TrustedCertificate {
        trust_store: store.into(),
        sha256: sha.into(),
        cluster: cluster.into(),
        node: "n1".into(),
        purpose: "tomcat".into(),
        pem: format!("pem of {sha}"),
        imported_at: 0,
    }
}

/// 50 concurrent imports of one bundle (each on its own connection where the backend has
/// several) leave exactly its certificates; a later bundle of one cluster replaces what that
/// cluster had and leaves the other cluster's alone.
async fn trust_imports(store: &Store) {
    let bundle = vec![
        trusted("tomcat-trust", "aa", "visiting"),
        trusted("callmanager-trust", "bb", "visiting"),
        trusted("tomcat-trust", "cc", "branch"),
    ];
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (s, b) = (store.clone(), bundle.clone());
        set.spawn(async move { s.import_trust(&b, 1000).await });
    }
    let mut added = 0;
    while let Some(r) = set.join_next().await {
        added += r.unwrap().expect("every import commits").added;
    }
    assert!(added >= 3, "{added}");
    let rows = store.trusted_certificates().await.unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    // visiting renews: its old certificates go, branch's stay.
    let done = store
        .import_trust(&[trusted("tomcat-trust", "dd", "visiting")], 2000)
        .await
        .unwrap();
    assert_eq!((done.added, done.removed), (1, 2));
    let mut shas: Vec<String> = store
        .trusted_certificates()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.sha256)
        .collect();
    shas.sort();
    assert_eq!(shas, ["cc", "dd"]);
}

#[tokio::test]
async fn r17_trust_imports_race_and_replace_per_cluster_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("ucm.db").display()))
        .await
        .unwrap();
    trust_imports(&store).await;
    store.close().await;
}

#[tokio::test]
async fn r17_trust_imports_race_and_replace_per_cluster_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    trust_imports(&store).await;
    store.close().await;
    db.drop_db().await;
}

/// 50 nodes ask for one lease at once on an empty table: the database gives it to exactly one,
/// and every racer is told who holds it. The holder renews it, nobody else takes it while it
/// lasts, an expired lease goes to the first who asks, and a released one is free at once.
async fn lease_racers(store: &Store) {
    let rps = vec!["DialCast_All".to_string()];
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (s, rps) = (store.clone(), rps.clone());
        set.spawn(async move {
            s.take_lease("paging", &format!("n{i}"), &format!("i{i}"), &rps, 60_000)
                .await
                .unwrap()
        });
    }
    let mut seen = Vec::new();
    while let Some(r) = set.join_next().await {
        seen.push(r.unwrap());
    }
    let holder = store.lease("paging").await.unwrap().expect("a holder");
    assert!(holder.live(), "{holder:?}");
    assert_eq!(holder.route_points, rps);
    assert!(
        seen.iter().all(|l| l.instance == holder.instance),
        "every racer was told the one holder {}: {seen:?}",
        holder.instance
    );
    // Renewed by its holder; refused to anyone else while it lasts.
    let again = store
        .take_lease("paging", &holder.node, &holder.instance, &rps, 60_000)
        .await
        .unwrap();
    assert_eq!(again.instance, holder.instance);
    assert_eq!(
        again.acquired_at, holder.acquired_at,
        "a renewal keeps `since`"
    );
    let other = store
        .take_lease("paging", "x", "ix", &rps, 60_000)
        .await
        .unwrap();
    assert_eq!(other.instance, holder.instance, "a live lease is not taken");
    // Let it lapse (a negative time: expired at once), then 20 standbys race for it.
    store
        .take_lease("paging", &holder.node, &holder.instance, &rps, -1)
        .await
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (s, rps) = (store.clone(), rps.clone());
        set.spawn(async move {
            s.take_lease("paging", &format!("s{i}"), &format!("si{i}"), &rps, 60_000)
                .await
                .unwrap()
                .instance
        });
    }
    let mut told = std::collections::BTreeSet::new();
    while let Some(r) = set.join_next().await {
        told.insert(r.unwrap());
    }
    assert_eq!(told.len(), 1, "exactly one standby took it: {told:?}");
    let taker = told.into_iter().next().unwrap();
    assert!(taker.starts_with("si"), "{taker}");
    // Released by its holder only.
    assert!(!store.release_lease("paging", "i-nobody").await.unwrap());
    assert!(store.release_lease("paging", &taker).await.unwrap());
    assert!(store.lease("paging").await.unwrap().is_none());
    let next = store
        .take_lease("paging", "y", "iy", &rps, 60_000)
        .await
        .unwrap();
    assert_eq!(next.instance, "iy");
    assert_eq!(store.leases().await.unwrap().len(), 1);
}

#[tokio::test]
async fn r16_a_lease_goes_to_exactly_one_of_many_racers_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    lease_racers(&store).await;
    store.close().await;
    db.drop_db().await;
}

/// On SQLite one node runs (the file's lock says so): the lease a killed run left is taken
/// back at once by the next run.
#[tokio::test]
async fn r16_leases_on_sqlite_belong_to_the_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("ucm.db").display()))
        .await
        .unwrap();
    let rps = vec!["DialCast_All".to_string()];
    let first = store
        .take_lease("paging", "ucm", "run-1", &rps, 60_000)
        .await
        .unwrap();
    assert_eq!(first.instance, "run-1");
    assert!(first.live());
    let renewed = store
        .take_lease("paging", "ucm", "run-1", &rps, 60_000)
        .await
        .unwrap();
    assert_eq!(renewed.acquired_at, first.acquired_at);
    let next_run = store
        .take_lease("paging", "ucm", "run-2", &rps, 60_000)
        .await
        .unwrap();
    assert_eq!(next_run.instance, "run-2");
    assert!(store.release_lease("paging", "run-2").await.unwrap());
    assert!(store.lease("paging").await.unwrap().is_none());
    store.close().await;
}

/// Eight imports of one definition at once into an empty PostgreSQL database (what nodes
/// started together do): all succeed, exactly one writes, the database holds it once.
#[tokio::test]
async fn r16_concurrent_imports_of_one_definition_write_it_once_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    let def = hashed_demo();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (s, d) = (store.clone(), def.clone());
        set.spawn(async move { s.import_unless_current(&d, "same", "demo").await });
    }
    let mut wrote = 0;
    while let Some(r) = set.join_next().await {
        wrote += usize::from(r.unwrap().expect("no duplicate key").changed);
    }
    assert_eq!(wrote, 1);
    assert_eq!(store.load().await.unwrap(), Some(def.clone()));
    // Plain imports (`ucm db import`) racing each other replace it in turn, none fails.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (s, d) = (store.clone(), def.clone());
        set.spawn(async move { s.import(&d, &format!("d{i}"), "demo").await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().expect("no duplicate key");
    }
    assert_eq!(store.load().await.unwrap(), Some(def));
    store.close().await;
    db.drop_db().await;
}
