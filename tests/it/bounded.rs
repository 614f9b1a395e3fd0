//! Issue 15, "bounded work for every stranger": limits on what one source can hold, and the
//! node's files kept private.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{ucm, Server};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn r15_database_and_data_directory_are_private_new_and_old() {
    // A data directory that does not exist yet: ucm creates it private.
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("ucm-data");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clusters/demo.yaml");
    let o = ucm()
        .args(["db", "import"])
        .arg(&demo)
        .arg("--data-dir")
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mode(&fresh), 0o700, "new data directory");
    assert_eq!(mode(&fresh.join("ucm.db")), 0o600, "new database");

    // A data directory and database left readable by everyone (an older version, a copy):
    // fixed when the node starts, and the WAL files it makes are private too.
    let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    let holder = tempfile::tempdir().unwrap();
    set(holder.path(), 0o755).unwrap();
    let mut srv = Server::start_in(holder, &[]);
    let dir = srv.data_dir.path().to_path_buf();
    assert_eq!(mode(&dir), 0o700, "data directory");
    assert_eq!(mode(&dir.join("ucm.db")), 0o600, "database");
    assert_eq!(mode(&dir.join("ucm.db-wal")), 0o600, "WAL");
    assert_eq!(mode(&dir.join("ucm.db-shm")), 0o600, "shared memory");
    srv.terminate();
    set(&dir, 0o755).unwrap();
    set(&dir.join("ucm.db"), 0o644).unwrap();
    let holder = std::mem::replace(&mut srv.data_dir, tempfile::tempdir().unwrap());
    drop(srv);
    let srv = Server::start_in(holder, &[]);
    assert_eq!(mode(&dir), 0o700, "data directory after restart");
    assert_eq!(mode(&dir.join("ucm.db")), 0o600, "database after restart");
    assert_eq!(mode(&dir.join("ucm.db-wal")), 0o600, "WAL after restart");
    drop(srv);
}
