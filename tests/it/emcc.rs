//! Extension Mobility Cross Cluster: the certificate exchange between clusters
//! (`ucm emcc sync-certs`) against OpenSSH's own sftp server, started here on loopback with
//! keys made here.

// The async tests hold `common::beside_captures()` for their whole run on purpose (each runs
// on its own thread's runtime; the lock only keeps conformance captures apart).
#![allow(clippy::await_holding_lock)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{have, skip_or_fail, ucm, write_file, Server};

const SSHD: &str = "/usr/sbin/sshd";

/// A cluster definition: the demo under another cluster id, with an administrator (`admin`)
/// and an application user without that role (`emproxy`, as in the demo).
fn cluster(dir: &Path, id: &str) -> String {
    let text = ucm::config::DEMO_YAML
        .replace("cluster:\n  id: demo\n", &format!("cluster:\n  id: {id}\n"))
        .replace(
            "application_users:\n",
            "application_users:\n  - userid: admin\n    password: admin\n    roles: [administrator]\n",
        );
    write_file(dir, &format!("{id}.yaml"), &text)
        .to_str()
        .unwrap()
        .to_string()
}

/// OpenSSH's sshd with only internal-sftp, on a free loopback port; killed on drop.
struct SftpServer {
    child: Child,
    port: u16,
    /// The directory the clusters meet in, and the client's key and known_hosts.
    dir: tempfile::TempDir,
}

impl SftpServer {
    fn start() -> Option<SftpServer> {
        if !Path::new(SSHD).exists() || !have("ssh-keygen") {
            skip_or_fail("OpenSSH's sshd is not installed (apt-get install openssh-server)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, kind) in [("host", "ed25519"), ("client", "ed25519")] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
                .arg(d.join(name))
                .status()
                .unwrap();
            assert!(st.success(), "ssh-keygen {name}");
        }
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir(d.join("exchange")).unwrap();
        // sshd's privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\n\
             PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\n",
            host = d.join("host").display(),
            keys = d.join("authorized_keys").display(),
        );
        let cfg = write_file(d, "sshd_config", &config);
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sshd");
        let host_pub = std::fs::read_to_string(d.join("host.pub")).unwrap();
        let mut parts = host_pub.split_whitespace();
        let (alg, key) = (parts.next().unwrap(), parts.next().unwrap());
        write_file(
            d,
            "known_hosts",
            &format!("[127.0.0.1]:{port} {alg} {key}\n"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(SftpServer { child, port, dir })
    }

    fn url(&self) -> String {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!(
            "sftp://{user}@127.0.0.1:{}{}",
            self.port,
            self.exchange().display()
        )
    }

    fn exchange(&self) -> PathBuf {
        self.dir.path().join("exchange")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn https(srv: &Server) -> String {
    format!("https://{}", srv.addr("https"))
}

/// `ucm emcc sync-certs` with the administrator's password in the environment.
fn sync(
    sftp: &SftpServer,
    clusters: &[&Server],
    extra: &[&str],
    password: &str,
) -> (i32, String, String) {
    let mut args: Vec<String> = vec!["emcc".into(), "sync-certs".into()];
    for c in clusters {
        args.push("--cluster".into());
        args.push(https(c));
    }
    args.extend(
        [
            "--sftp",
            &sftp.url(),
            "--identity",
            sftp.file("client").to_str().unwrap(),
            "--known-hosts",
            sftp.file("known_hosts").to_str().unwrap(),
            "--insecure",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = ucm()
        .args(&args)
        .env("UCM_PASSWORD", password)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// GET/POST over HTTPS to a node with curl (its own certificate: `-k`).
fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "-o", "-", "-w", "\n%{http_code}", url])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn trust(srv: &Server) -> serde_json::Value {
    let (st, body) = curl(&format!("{}/ucm/trust", https(srv)), &["-u", "admin:admin"]);
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// (store, cluster) pairs in a node's trust stores.
fn trusted(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["trust_store"].as_str().unwrap().to_string(),
                c["cluster"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn r17_sync_certs_exports_consolidates_and_imports_through_openssh_sftp() {
    let _lo = crate::common::beside_captures();
    if !have("curl") {
        skip_or_fail("curl is not installed");
        return;
    }
    let Some(sftp) = SftpServer::start() else {
        return;
    };
    let defs = tempfile::tempdir().unwrap();
    let home = Server::start(&["--config", &cluster(defs.path(), "home")]);
    let mut visiting = Server::start(&["--config", &cluster(defs.path(), "visiting")]);

    // Nothing exchanged yet: --check says so for both, exit 1, and writes nothing.
    let (rc, out, err) = sync(&sftp, &[&home, &visiting], &["--check"], "admin");
    assert_eq!(rc, 1, "{out}{err}");
    assert!(out.contains("STALE    home"), "{out}");
    assert!(out.contains("not exported"), "{out}");
    assert!(err.contains("stale"), "{err}");
    assert_eq!(std::fs::read_dir(sftp.exchange()).unwrap().count(), 0);

    // The exchange.
    let (rc, out, err) = sync(&sftp, &[&home, &visiting], &[], "admin");
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("home ("), "{out}");
    assert!(out.contains("exported 2 certificates"), "{out}");
    for f in ["home.pem", "visiting.pem", "consolidated.pem"] {
        let text = std::fs::read_to_string(sftp.exchange().join(f)).unwrap();
        let entries = ucm::wire::certs::parse_bundle(&text).unwrap();
        assert!(!entries.is_empty(), "{f}");
    }
    // Each trusts the other's HTTPS certificate (Tomcat-trust) and its call-control one
    // (CallManager-trust and Phone-SAST-trust), and not itself.
    let want = |other: &str| {
        vec![
            ("callmanager-trust".to_string(), other.to_string()),
            ("phone-sast-trust".to_string(), other.to_string()),
            ("tomcat-trust".to_string(), other.to_string()),
        ]
    };
    assert_eq!(trusted(&trust(&home)), want("visiting"));
    assert_eq!(trusted(&trust(&visiting)), want("home"));
    // The certificate home trusts is the one visiting presents on its HTTPS port.
    let presented = {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo | openssl s_client -connect {} 2>/dev/null | openssl x509 -outform DER | sha256sum",
                visiting.addr("https")
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    if presented.len() == 64 {
        let t = trust(&home);
        assert!(
            t["certificates"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["trust_store"] == "tomcat-trust" && c["sha256"] == presented.as_str()),
            "{t}"
        );
    }
    let (rc, out, err) = sync(&sftp, &[&home, &visiting], &["--check"], "admin");
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("current  home") && out.contains("current  visiting"),
        "{out}"
    );
    // Run again: nothing changes.
    let (rc, out, _) = sync(&sftp, &[&home, &visiting], &["--json"], "admin");
    assert_eq!(rc, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["clusters"][0]["added"], 0, "{v}");
    assert_eq!(v["clusters"][0]["unchanged"], 3, "{v}");

    // visiting renews its certificate: --check names both sides, a new sync replaces it.
    let data = std::mem::replace(&mut visiting.data_dir, tempfile::tempdir().unwrap());
    visiting.terminate();
    drop(visiting);
    std::fs::remove_file(data.path().join("node-cert.pem")).unwrap();
    std::fs::remove_file(data.path().join("node-key.pem")).unwrap();
    let visiting = Server::start_in(data, &["--config", &cluster(defs.path(), "visiting")]);
    let (rc, out, _) = sync(&sftp, &[&home, &visiting], &["--check"], "admin");
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("STALE    visiting"), "{out}");
    assert!(out.contains("changed since its export"), "{out}");
    assert!(out.contains("STALE    home"), "{out}");
    assert!(
        out.contains("lack the current certificates of cluster visiting"),
        "{out}"
    );
    let (rc, out, err) = sync(&sftp, &[&home, &visiting], &["--json"], "admin");
    assert_eq!(rc, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["clusters"][0]["removed"], 3,
        "home drops visiting's old certificate: {v}"
    );
    assert_eq!(v["clusters"][0]["added"], 3, "{v}");
    let (rc, out, _) = sync(&sftp, &[&home, &visiting], &["--check"], "admin");
    assert_eq!(rc, 0, "{out}");
}

#[test]
fn r17_sync_certs_refuses_what_it_cannot_trust_and_the_endpoints_hold() {
    let _lo = crate::common::beside_captures();
    if !have("curl") {
        skip_or_fail("curl is not installed");
        return;
    }
    let Some(sftp) = SftpServer::start() else {
        return;
    };
    let defs = tempfile::tempdir().unwrap();
    let home = Server::start(&["--config", &cluster(defs.path(), "home")]);

    // An sFTP server whose host key is not known: refused, its fingerprint named.
    write_file(sftp.dir.path(), "known_hosts", "");
    let (rc, _, err) = sync(&sftp, &[&home], &[], "admin");
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("host key SHA256:"), "{err}");
    assert!(err.contains("ssh-keyscan"), "{err}");
    // A wrong administrator password: refused by the cluster, exit 1, nothing written.
    let host_pub = std::fs::read_to_string(sftp.file("host.pub")).unwrap();
    let mut parts = host_pub.split_whitespace();
    write_file(
        sftp.dir.path(),
        "known_hosts",
        &format!(
            "[127.0.0.1]:{} {} {}\n",
            sftp.port,
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    );
    let (rc, _, err) = sync(&sftp, &[&home], &[], "wrong");
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("401"), "{err}");
    assert_eq!(std::fs::read_dir(sftp.exchange()).unwrap().count(), 0);
    // A cluster named over plain HTTP: a usage error before anything is sent.
    let out = ucm()
        .args(["emcc", "sync-certs", "--cluster"])
        .arg(format!("http://{}", home.addr("http")))
        .args(["--sftp", &sftp.url()])
        .env("UCM_PASSWORD", "admin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTPS base URL"));
    // A bad --sftp URL names itself.
    let out = ucm()
        .args([
            "emcc",
            "sync-certs",
            "--cluster",
            "https://127.0.0.1:1",
            "--sftp",
            "ftp://x",
        ])
        .env("UCM_PASSWORD", "admin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sftp"));

    // The endpoints: HTTPS only, administrators only, bundles checked.
    let (st, body) = curl(
        &format!("http://{}/ucm/certificates", home.addr("http")),
        &["-u", "admin:admin"],
    );
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("HTTPS only"), "{body}");
    let base = https(&home);
    let (st, _) = curl(&format!("{base}/ucm/certificates"), &[]);
    assert_eq!(st, 401);
    let (st, body) = curl(
        &format!("{base}/ucm/certificates"),
        &["-u", "emproxy:emproxy"],
    );
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("administrator role"), "{body}");
    let (st, body) = curl(&format!("{base}/ucm/certificates"), &["-u", "admin:admin"]);
    assert_eq!(st, 200, "{body}");
    let mine = ucm::wire::certs::parse_bundle(&body).unwrap();
    assert_eq!(mine.len(), 2, "HTTPS and call-control certificates: {body}");
    assert!(mine.iter().all(|e| e.cluster == "home"));
    let bad = body.replace("purpose: tomcat", "purpose: ipsec");
    let (st, resp) = curl(
        &format!("{base}/ucm/trust"),
        &["-u", "admin:admin", "--data-binary", &bad],
    );
    assert_eq!(st, 400, "{resp}");
    // The export lists callmanager, then tomcat: the tomcat purpose header is line 18.
    assert!(resp.contains("line 18: purpose \"ipsec\""), "{resp}");
    // Its own certificates are not imported as trust.
    let (st, resp) = curl(
        &format!("{base}/ucm/trust"),
        &["-u", "admin:admin", "--data-binary", &body],
    );
    assert_eq!(st, 200, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(
        (v["added"].as_u64(), v["skipped_own"].as_u64()),
        (Some(0), Some(2)),
        "{v}"
    );
    let big = "#".repeat(1024 * 1024 + 1);
    let big_file = write_file(sftp.dir.path(), "big.pem", &big);
    let (st, _) = curl(
        &format!("{base}/ucm/trust"),
        &[
            "-u",
            "admin:admin",
            "--data-binary",
            &format!("@{}", big_file.display()),
        ],
    );
    assert_eq!(st, 413);
}

/// README's certificate-exchange example, then its remote cluster update example, run as
/// written: in network, mount and PID namespaces of their own, with the two shipped EMCC
/// clusters and the sFTP server README assumes at the addresses it names (the clusters on
/// 127.0.1.1 and 127.0.2.1, OpenSSH on 127.0.0.1:22, a fresh `/srv` on tmpfs) and a home whose
/// `~/.ssh` holds the key and the server's host key.
#[test]
fn r17_readme_sync_certs_example_runs_as_written() {
    let _lo = crate::common::beside_captures();
    use crate::common::is_root;
    if !is_root() || !have("unshare") || !have("ip") || !have("curl") || !Path::new(SSHD).exists() {
        skip_or_fail("root, unshare, ip, curl and sshd for README's EMCC example");
        return;
    }
    let blocks = crate::readme::sh_blocks("## Extension Mobility Cross Cluster", 4);
    assert_eq!(blocks.len(), 4);
    let example = &blocks[0];
    // The remote cluster update's example follows the exchange.
    assert!(
        blocks[1].contains("ucm emcc update") && blocks[1].contains("ucm emcc status"),
        "{}",
        blocks[1]
    );
    assert_eq!(
        example.matches("ucm emcc sync-certs").count(),
        2,
        "{example}"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join(".ssh")).unwrap();
    for (name, path) in [
        ("host", d.join("host")),
        ("client", d.join(".ssh/id_ed25519")),
    ] {
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
    }
    std::fs::copy(d.join(".ssh/id_ed25519.pub"), d.join("authorized_keys")).unwrap();
    let host_pub = std::fs::read_to_string(d.join("host.pub")).unwrap();
    let mut parts = host_pub.split_whitespace();
    write_file(
        &d.join(".ssh"),
        "known_hosts",
        &format!(
            "127.0.0.1 {} {}\n",
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    );
    write_file(
        d,
        "sshd_config",
        &format!(
            "Port 22\nListenAddress 127.0.0.1\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\n",
            d = d.display()
        ),
    );
    // The shipped EMCC clusters, as README names them.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clusters");
    let home = d.join("emcc-home.yaml");
    let visiting = d.join("emcc-visiting.yaml");
    std::fs::copy(shipped.join("emcc-home.yaml"), &home).unwrap();
    std::fs::copy(shipped.join("emcc-visiting.yaml"), &visiting).unwrap();
    let (home, visiting) = (home.display().to_string(), visiting.display().to_string());
    let mut script = String::from(
        "set -u\nip link set lo up\nfail() { echo \"FAILED($1): $2\" >&2; exit 1; }\n\
         mount -t tmpfs tmpfs /srv && mkdir /srv/emcc || fail mount /srv\n\
         mkdir -p /run/sshd\n/usr/sbin/sshd -D -e -f sshd_config > sshd.log 2>&1 &\n",
    );
    for (def, ip, name) in [
        (&home, "127.0.1.1", "home"),
        (&visiting, "127.0.2.1", "visiting"),
    ] {
        script.push_str(&format!(
            "ucm serve --config {def} --bind {ip} --http-port 8080 --https-port 8443 \
             --tftp-http-port 6970 --tftp-port 0 --sip-port 0 --sips-port 0 --data-dir {name} \
             > {name}.out 2> {name}.err &\n\
             for i in $(seq 1 300); do curl -sf http://{ip}:8080/healthz >/dev/null && break; sleep 0.1; done\n\
             curl -sf http://{ip}:8080/healthz >/dev/null || fail {name} \"$(cat {name}.err)\"\n"
        ));
    }
    script.push_str(
        "for i in $(seq 1 200); do ss -ltn | grep -q '127.0.0.1:22 ' && break; sleep 0.1; done\n",
    );
    let mut n = 0;
    for line in example.lines().chain(blocks[1].lines()) {
        n += 1;
        let line = line.split(" #").next().unwrap().trim();
        script.push_str(&format!(
            "{line} > out{n} 2> err{n} || fail {n} \"$(cat out{n} err{n} sshd.log)\"\n"
        ));
    }
    script.push_str(
        "grep -q 'current  home' out3 || fail check \"$(cat out3)\"\n\
         grep -q 'current  visiting' out3 || fail check \"$(cat out3)\"\n\
         ls /srv/emcc | tr '\\n' ' ' | grep -q 'consolidated.pem home.pem visiting.pem' || fail files \"$(ls /srv/emcc)\"\n\
         grep -Eq '^visiting +127.0.2.1 +14.0 +active +EM nodes: https://127.0.2.1:8443' out5 || fail update \"$(cat out5)\"\n\
         grep -q 'pstn-access \\[127.0.2.1:' out6 || fail status \"$(cat out6)\"\n\
         echo BLOCKS-1-2-OK\n",
    );
    // The login across clusters: the phone runs in the background (its ready line says it
    // registered); the phone's state is read once it has moved to the home.
    assert!(blocks[2].contains("ucm em login") && blocks[2].contains("ucm em logout"));
    for line in blocks[2].lines() {
        n += 1;
        let line = line.split(" #").next().unwrap().trim();
        if let Some(bg) = line.strip_suffix('&') {
            script.push_str(&format!(
                "{bg} > out{n} 2> err{n} &\n\
                 for i in $(seq 1 300); do grep -q '\"phones\"' out{n} && break; sleep 0.1; done\n\
                 grep -q '\"phones\"' out{n} || fail {n} \"$(cat out{n} err{n})\"\n"
            ));
            continue;
        }
        if line.starts_with("curl -s http://127.0.2.10:8081/state") {
            script.push_str(
                "for i in $(seq 1 300); do curl -s http://127.0.2.10:8081/state | grep -q '\"home_cluster\":\"home\"' && break; sleep 0.1; done\n",
            );
        }
        script.push_str(&format!(
            "{line} > out{n} 2> err{n} || fail {n} \"$(cat out{n} err{n})\"\n"
        ));
        if line.starts_with("curl -s http://127.0.2.10:8081/state") {
            script.push_str(&format!(
                "grep -q '\"lines\":\\[{{[^]]*\"dn\":\"4001\"' out{n} || fail state \"$(cat out{n})\"\n"
            ));
        }
        if line.starts_with("ucm emcc status") {
            script.push_str(&format!(
                "grep -Eq '^home +EMCC1 +SEP00000000E0B1 +traveler +visiting' out{n} || fail status \"$(cat out{n})\"\n"
            ));
        }
    }
    let back = "for i in $(seq 1 300); do curl -s http://127.0.2.10:8081/state | grep -q '\"dn\":\"5001\"' && break; sleep 0.1; done\n\
         curl -s http://127.0.2.10:8081/state | grep -q '\"dn\":\"5001\"' || fail back \"$(curl -s http://127.0.2.10:8081/state)\"\n";
    script.push_str(back);
    // The EM application's login (the PIN checked by the home), then the logout.
    assert!(blocks[3].contains("/emapp/EMAppServlet") && blocks[3].contains("ucm em logout"));
    for line in blocks[3].lines() {
        n += 1;
        let line = line.split(" #").next().unwrap().trim();
        script.push_str(&format!(
            "{line} > out{n} 2> err{n} || fail {n} \"$(cat out{n} err{n})\"\n"
        ));
        if line.contains("/emapp/EMAppServlet") {
            script.push_str(&format!(
                "grep -q 'Welcome, traveler' out{n} || fail emapp \"$(cat out{n})\"\n\
                 for i in $(seq 1 300); do curl -s http://127.0.2.10:8081/state | grep -q '\"home_cluster\":\"home\"' && break; sleep 0.1; done\n"
            ));
        }
        if line.starts_with("ucm emcc status") {
            script.push_str(&format!(
                "grep -q '1 as visiting' out{n} || fail status4 \"$(cat out{n})\"\n"
            ));
        }
    }
    script.push_str(back);
    script.push_str("echo ALL-OK\n");
    let bin = Path::new(env!("CARGO_BIN_EXE_ucm")).parent().unwrap();
    let out = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "bash",
            "-c",
            &script,
        ])
        .current_dir(d)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("HOME", d)
        .env("USER", "root")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("UCM_PASSWORD")
        .output()
        .expect("unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("ALL-OK"),
        "{text}\n--- script:\n{script}"
    );
}

/// What the exchange is for: cluster home's Redirector asks cluster visiting's WebDialer over
/// HTTPS with no CA file. Before the exchange visiting's certificate is not trusted (the
/// Redirector skips it, saying so in its log); after it, home's Tomcat-trust store holds it and
/// visiting's user is sent there.
#[test]
fn r17_after_the_exchange_the_redirector_trusts_the_other_cluster() {
    let _lo = crate::common::beside_captures();
    if !have("curl") {
        skip_or_fail("curl is not installed");
        return;
    }
    let Some(sftp) = SftpServer::start() else {
        return;
    };
    let defs = tempfile::tempdir().unwrap();
    let visiting_def = cluster(defs.path(), "visiting");
    let text = std::fs::read_to_string(&visiting_def).unwrap().replace(
        "end_users:\n",
        "end_users:\n  - userid: traveler\n    last_name: Traveler\n    password: cisco\n",
    );
    std::fs::write(&visiting_def, text).unwrap();
    let visiting = Server::start(&["--config", &visiting_def]);
    let home_def = cluster(defs.path(), "home");
    let text = std::fs::read_to_string(&home_def).unwrap().replace(
        "  webdialer:\n    user_session_expiry_hours: 0\n",
        &format!(
            "  webdialer:\n    user_session_expiry_hours: 0\n    webdialers: [\"{}\"]\n    redirector_timeout_ms: 3000\n",
            https(&visiting)
        ),
    );
    std::fs::write(&home_def, text).unwrap();
    let home = Server::start(&["--config", &home_def]);
    let redirect = || {
        curl(
            &format!("http://{}/webdialer/Redirector", home.addr("http")),
            &[
                "-D",
                "-",
                "-d",
                "uid=traveler",
                "-d",
                "pwd=cisco",
                "-d",
                "destination=10002",
            ],
        )
    };
    let (st, body) = redirect();
    assert_eq!(st, 404, "{body}");
    assert!(
        body.contains("traveler is not a user of any WebDialer"),
        "{body}"
    );
    let logs = home.wait_for_log("Redirector: WebDialer skipped");
    assert!(logs.contains(&https(&visiting)), "{logs}");

    let (rc, out, err) = sync(&sftp, &[&home, &visiting], &[], "admin");
    assert_eq!(rc, 0, "{out}{err}");
    let (st, body) = redirect();
    assert_eq!(st, 303, "{body}");
    assert!(
        body.to_ascii_lowercase().contains(&format!(
            "location: {}/webdialer/webdialer",
            https(&visiting)
        )),
        "{body}"
    );
}

/// `ucm serve` of `def` on `ip` with HTTPS on `https_port` (the other cluster's definition
/// names that address) and every other port free.
fn emcc_node(def: &Path, ip: &str, https_port: u16) -> Server {
    emcc_node_in(tempfile::tempdir().unwrap(), def, ip, https_port, 0)
}

/// A node of an EMCC cluster on `data_dir` (kept across a restart), its TFTP over HTTP on
/// `tftp_port` (0: any).
fn emcc_node_in(
    data_dir: tempfile::TempDir,
    def: &Path,
    ip: &str,
    https_port: u16,
    tftp_port: u16,
) -> Server {
    let mut cmd = ucm();
    cmd.arg("serve")
        .arg("--config")
        .arg(def)
        .args(["--bind", ip, "--https-port", &https_port.to_string()])
        .args([
            "--http-port",
            "0",
            "--tftp-http-port",
            &tftp_port.to_string(),
            "--tftp-port",
            "0",
        ])
        .args(["--sip-port", "0", "--sips-port", "0", "--data-dir"])
        .arg(data_dir.path())
        .env("UCM_LOG", "info");
    let (child, ready, stderr) =
        crate::common::spawn_ready(cmd, "ucm serve", Duration::from_secs(60));
    Server {
        child,
        ready,
        data_dir,
        stderr,
        seen: Default::default(),
    }
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped definitions, each naming the other's address with the port the test gave it.
fn emcc_definitions(dir: &Path, home_port: u16, visiting_port: u16) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clusters");
    let home = std::fs::read_to_string(root.join("emcc-home.yaml")).unwrap();
    let visiting = std::fs::read_to_string(root.join("emcc-visiting.yaml")).unwrap();
    let remote = "      address: 127.0.2.1\n";
    assert!(home.contains(remote));
    let home = home.replace(
        remote,
        &format!("      address: 127.0.2.1:{visiting_port}\n"),
    );
    let remote = "      address: 127.0.1.1\n";
    assert!(visiting.contains(remote));
    let visiting = visiting.replace(remote, &format!("      address: 127.0.1.1:{home_port}\n"));
    (
        write_file(dir, "emcc-home.yaml", &home),
        write_file(dir, "emcc-visiting.yaml", &visiting),
    )
}

/// `ucm emcc update` at a node, as its administrator.
fn emcc_update(srv: &Server, json: bool) -> (i32, String, String) {
    let mut cmd = ucm();
    cmd.args(["emcc", "update", "--server", &https(srv), "--insecure"])
        .env("UCM_PASSWORD", "admin");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ucm emcc status` on a node's database.
fn emcc_status(srv: &Server, json: bool) -> (i32, String, String) {
    let mut cmd = ucm();
    cmd.args(["emcc", "status", "--db"]).arg(format!(
        "sqlite:{}",
        srv.data_dir.path().join("ucm.db").display()
    ));
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ucm em login` at the visiting cluster's EM API, as emproxy: exit code and all output.
fn em_login_at(srv: &Server, device: &str, user: &str) -> (i32, String) {
    let out = ucm()
        .args([
            "em",
            "login",
            "--server",
            &format!("http://{}", srv.addr("http")),
        ])
        .args(["--app-user", "emproxy", "--device", device, "--user", user])
        .env("UCM_EM_APP_PASSWORD", "emproxy")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn r17_the_emcc_cluster_definitions_check() {
    let _lo = crate::common::beside_captures();
    for f in ["emcc-home.yaml", "emcc-visiting.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/clusters")
            .join(f);
        let out = ucm().args(["config", "check"]).arg(&path).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{f}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The remote cluster update between two `ucm serve` clusters (the shipped definitions, home on
/// 127.0.1.1 and visiting on 127.0.2.1, each with its own SQLite): before the certificate
/// exchange it fails naming the peer that is not trusted, after it each learns the other's
/// version, EM service nodes and trunk services; `ucm emcc status` shows them from the
/// database. The inter-cluster API refuses a stranger without a trusted client certificate,
/// and a huge body.
#[test]
fn r17_remote_cluster_update_over_mutually_verified_https() {
    let _lo = crate::common::beside_captures();
    if !have("curl") || !have("openssl") {
        skip_or_fail("curl and openssl are needed");
        return;
    }
    let Some(sftp) = SftpServer::start() else {
        return;
    };
    let defs = tempfile::tempdir().unwrap();
    let (home_port, visiting_port) = (free_port("127.0.1.1"), free_port("127.0.2.1"));
    let (home_def, visiting_def) = emcc_definitions(defs.path(), home_port, visiting_port);
    let home = emcc_node(&home_def, "127.0.1.1", home_port);
    let visiting = emcc_node(&visiting_def, "127.0.2.1", visiting_port);
    assert_eq!(https(&home), format!("https://127.0.1.1:{home_port}"));

    // Never exchanged: the update fails naming the peer, stored as the last outcome.
    let (rc, out, err) = emcc_update(&home, false);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "remote cluster visiting at 127.0.2.1:{visiting_port} is not trusted"
        )),
        "{out}"
    );
    assert!(out.contains("ucm emcc sync-certs"), "{out}");
    assert!(err.contains("not updated: visiting"), "{err}");
    let (rc, out, err) = emcc_status(&home, false);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(out.contains("INACTIVE"), "{out}");
    assert!(out.contains("is not trusted"), "{out}");
    assert!(out.contains("EMCC devices logged in: none"), "{out}");
    // traveler is not a user of visiting: its EM service asks its remote clusters, and home
    // is not activated there yet (its update at start failed the same way): code 40.
    let (rc, out) = em_login_at(&visiting, "SEP00000000E0B1", "traveler");
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("EM error 40 (No response from remote host)"),
        "{out}"
    );
    assert!(out.contains("home (not activated)"), "{out}");

    // A stranger with no client certificate, or with one of its own, is refused before its
    // body is read, however big.
    let url = format!("https://127.0.2.1:{visiting_port}/ucm/emcc/v1/cluster");
    let big = write_file(defs.path(), "big.json", &"x".repeat(8 * 1024 * 1024));
    let big_arg = format!("@{}", big.display());
    let (st, body) = curl(&url, &["--data-binary", &big_arg]);
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("no client certificate"), "{body}");
    let d = defs.path();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=stranger", "-keyout"])
        .arg(d.join("stranger-key.pem"))
        .arg("-out")
        .arg(d.join("stranger-cert.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let stranger = |extra: &[&str]| {
        let cert = d.join("stranger-cert.pem");
        let key = d.join("stranger-key.pem");
        let mut args = vec![
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&url, &args)
    };
    let (st, body) = stranger(&["--data-binary", &big_arg]);
    assert_eq!(st, 403, "{body}");
    assert!(
        body.contains("is not in cluster visiting's Tomcat-trust store"),
        "{body}"
    );
    // 50 strangers at once, each with a big body: all refused, none read.
    let floods: Vec<_> = (0..50)
        .map(|_| {
            let (url, big_arg) = (url.clone(), big_arg.clone());
            std::thread::spawn(move || curl(&url, &["--data-binary", &big_arg]).0)
        })
        .collect();
    for f in floods {
        assert_eq!(f.join().unwrap(), 403);
    }

    // The certificate exchange, then an update on demand on each side.
    let (rc, out, err) = sync(&sftp, &[&home, &visiting], &[], "admin");
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = emcc_update(&home, true);
    assert_eq!(rc, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let r = &v["remote_clusters"][0];
    assert_eq!(r["cluster_id"], "visiting", "{v}");
    assert_eq!(r["remote_activated"], true, "{v}");
    assert_eq!(r["last_outcome"], "ok", "{v}");
    assert_eq!(r["version"], "14.0", "{v}");
    assert_eq!(
        r["em_service_nodes"],
        serde_json::json!([format!("https://127.0.2.1:{visiting_port}")]),
        "{v}"
    );
    let visiting_sip = visiting.addr("sip_udp").to_string();
    assert_eq!(
        r["trunk_services"],
        serde_json::json!({"pstn-access": [visiting_sip], "rsvp-agent": [visiting_sip]}),
        "{v}"
    );
    let (rc, out, err) = emcc_update(&visiting, false);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("home"), "{out}");
    assert!(out.contains("active"), "{out}");

    // The visiting side of a login: home answers that it is traveler's home and takes the
    // login (the phone is not running here: see the cross-cluster test for it following);
    // the logout frees it. A user of neither cluster is not found (23).
    let (rc, out) = em_login_at(&visiting, "SEP00000000E0B1", "traveler");
    assert_eq!(rc, 0, "{out}");
    home.wait_for_log("EMCC: home lookup answered");
    home.wait_for_log("EMCC: login at the home");
    let (rc, out) = em_at(&visiting, &["logout", "--device", "SEP00000000E0B1"]);
    assert_eq!(rc, 0, "{out}");
    home.wait_for_log("EMCC: logout at the home");
    let (rc, out) = em_login_at(&visiting, "SEP00000000E0B1", "nobody");
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("EM error 23 (User not found)"), "{out}");
    assert!(out.contains("nor at any EMCC remote cluster"), "{out}");

    // Status, from each database.
    let (rc, out, err) = emcc_status(&home, false);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("visiting"), "{out}");
    assert!(
        out.contains(&format!("EM nodes: https://127.0.2.1:{visiting_port}")),
        "{out}"
    );
    assert!(out.contains("pstn-access ["), "{out}");
    let (rc, out, _) = emcc_status(&visiting, true);
    assert_eq!(rc, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cluster"], "visiting");
    assert_eq!(v["remote_clusters"][0]["cluster_id"], "home", "{v}");
    assert_eq!(v["remote_clusters"][0]["version"], "14.0", "{v}");
    assert_eq!(
        v["remote_clusters"][0]["em_service_nodes"],
        serde_json::json!([format!("https://127.0.1.1:{home_port}")]),
        "{v}"
    );
    assert_eq!(
        v["emcc_devices"],
        serde_json::json!({"max": 2500, "as_home": [], "as_visiting": []})
    );

    // A node of home, by its own certificate, over the wire: answered; a query that claims
    // another cluster, a huge body and a body that is not a query are refused.
    let as_home = |extra: &[&str]| {
        let cert = home.data_dir.path().join("node-cert.pem");
        let key = home.data_dir.path().join("node-key.pem");
        let mut args: Vec<String> = vec![
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
            "-H".into(),
            "Content-Type: application/json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&url, &args)
    };
    let (st, body) = as_home(&[
        "--data-binary",
        r#"{"api":"ucm-emcc/1","cluster":"home","version":"14.0"}"#,
    ]);
    assert_eq!(st, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["cluster"], "visiting", "{info}");
    let (st, body) = as_home(&[
        "--data-binary",
        r#"{"api":"ucm-emcc/1","cluster":"elsewhere","version":"14.0"}"#,
    ]);
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("cluster home's"), "{body}");
    let (st, body) = as_home(&["--data-binary", &big_arg]);
    assert_eq!(st, 413, "{body}");
    let (st, body) = as_home(&["--data-binary", "not json"]);
    assert_eq!(st, 400, "{body}");
    // Plain HTTP is refused, whatever it claims.
    let (st, _) = curl(
        &format!("http://{}/ucm/emcc/v1/cluster", visiting.addr("http")),
        &["--data-binary", "{}"],
    );
    assert_eq!(st, 403);
    // The on-demand update is an administrator's.
    let (st, _) = curl(
        &format!("{}/ucm/emcc/update", https(&home)),
        &["-X", "POST", "-u", "emproxy:emproxy"],
    );
    assert_eq!(st, 403);
}

/// What the remote cluster update stores: a success replaces what is known, a failure keeps
/// the last known version and services but marks the cluster not activated, with the reason;
/// 50 nodes recording at once leave one row, whole.
async fn remote_cluster_rows(store: &ucm::store::Store) {
    use ucm::services::emcc::store::{RemoteClusters, UpdateOutcome};
    let failed =
        UpdateOutcome::Failed("remote cluster visiting at 127.0.2.1:8443 is not trusted".into());
    store
        .record_remote_update("visiting", "127.0.2.1", &failed, "home-pub", 100)
        .await
        .unwrap();
    let rows = store.remote_clusters().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].remote_activated);
    assert_eq!(rows[0].version, None);
    assert!(rows[0].last_outcome.contains("not trusted"));
    let ok = UpdateOutcome::Ok {
        version: "14.0".into(),
        em_service_nodes: vec!["https://127.0.2.1:8443".into()],
        trunk_services: [(
            "pstn-access".to_string(),
            vec!["127.0.2.1:5060".to_string()],
        )]
        .into_iter()
        .collect(),
    };
    store
        .record_remote_update("visiting", "127.0.2.1", &ok, "home-sub", 200)
        .await
        .unwrap();
    let r = &store.remote_clusters().await.unwrap()[0];
    assert!(r.remote_activated);
    assert_eq!(
        (
            r.version.as_deref(),
            r.last_success_at,
            r.last_outcome.as_str()
        ),
        (Some("14.0"), Some(200), "ok")
    );
    assert_eq!(r.em_service_nodes, ["https://127.0.2.1:8443"]);
    assert_eq!(r.updated_by, "home-sub");
    // A failure afterwards keeps what was learnt.
    store
        .record_remote_update("visiting", "127.0.2.1", &failed, "home-pub", 300)
        .await
        .unwrap();
    let r = &store.remote_clusters().await.unwrap()[0];
    assert!(!r.remote_activated);
    assert_eq!(
        (r.version.as_deref(), r.last_success_at, r.last_attempt_at),
        (Some("14.0"), Some(200), 300)
    );
    assert_eq!(r.trunk_services["pstn-access"], ["127.0.2.1:5060"]);
    // Racers: the database decides, one row stays.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        let ok = ok.clone();
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            let o = if i % 2 == 0 { ok } else { failed };
            store
                .record_remote_update("visiting", "127.0.2.1", &o, &format!("n{i}"), 400 + i)
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let rows = store.remote_clusters().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].version.as_deref(), Some("14.0"));
}

#[tokio::test]
async fn r17_remote_cluster_rows_sqlite() {
    let _lo = crate::common::beside_captures();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("ucm.db").display());
    let store = ucm::store::Store::open(&url).await.unwrap();
    remote_cluster_rows(&store).await;
    store.close().await;
}

#[tokio::test]
async fn r17_remote_cluster_rows_postgres() {
    let _lo = crate::common::beside_captures();
    let Some(db) = crate::common::PgDb::create().await else {
        return;
    };
    let store = ucm::store::Store::open(&db.url).await.unwrap();
    remote_cluster_rows(&store).await;
    store.close().await;
    db.drop_db().await;
}

/// GET a simulated phone's `/state`.
fn phone_state(sim: &crate::phone::Sim, device: &str) -> serde_json::Value {
    let (st, body) = curl(&format!("http://{}/state", sim.http(device)), &[]);
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits (bounded) until the phone's state satisfies `ok`; the last state otherwise.
fn wait_phone(
    sim: &crate::phone::Sim,
    device: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_phone_for(sim, device, what, 30, ok)
}

/// [`wait_phone`] for at most `secs` seconds.
fn wait_phone_for(
    sim: &crate::phone::Sim,
    device: &str,
    what: &str,
    secs: u64,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = phone_state(sim, device);
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{device}: not {what} within {secs} s: {s:#}\n{}",
            sim.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lines_of(s: &serde_json::Value) -> Vec<String> {
    s["config"]["lines"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|x| x["dn"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `ucm em <args>` at a node's EM API as emproxy.
fn em_at(srv: &Server, args: &[&str]) -> (i32, String) {
    let out = ucm()
        .arg("em")
        .arg(args[0])
        .args(["--server", &format!("http://{}", srv.addr("http"))])
        .args(["--app-user", "emproxy"])
        .args(&args[1..])
        .env("UCM_EM_APP_PASSWORD", "emproxy")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The login across clusters, end to end, between two `ucm serve` (the shipped definitions;
/// home's gateway trunk points at SIPp, home's EMCC device cap is 6, visiting has 50 more
/// EMCC phones): traveler logs in at visiting's phone SEP00000000E0B1 (a `ucm phone sim`),
/// visiting takes a slot and hands the login to home, home takes a slot and builds the
/// phone's configuration with traveler's line 4001, the phone follows visiting's small
/// configuration to home's TFTP and registers with home's node; a call from home's gateway to
/// 4001 rings it and is answered; logout at visiting frees both slots and the phone goes back
/// to its own line and node. Then 50 logins race for home's 6 slots: exactly 6 succeed, the
/// others get EMCC error 33 and leave no slot taken at visiting. A stranger without a trusted
/// client certificate is refused by the login API.
#[test]
fn r17_cross_cluster_login_registers_the_phone_at_home_and_slots_hold_the_cap() {
    let _lo = crate::common::beside_captures();
    if !have("curl") || !have("openssl") {
        skip_or_fail("curl and openssl are needed");
        return;
    }
    let Some(sftp) = SftpServer::start() else {
        return;
    };
    let defs = tempfile::tempdir().unwrap();
    let (home_port, visiting_port) = (free_port("127.0.1.1"), free_port("127.0.2.1"));
    let (home_def, visiting_def) = emcc_definitions(defs.path(), home_port, visiting_port);
    let gw_port = std::net::UdpSocket::bind("127.0.1.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home_text = std::fs::read_to_string(&home_def)
        .unwrap()
        .replace(
            "destinations: [\"127.0.1.1:5090\"]",
            &format!("destinations: [\"127.0.1.1:{gw_port}\"]"),
        )
        .replace("emcc:\n", "emcc:\n  max_emcc_devices: 6\n");
    std::fs::write(&home_def, home_text).unwrap();
    let extra: Vec<String> = (0..50).map(|i| format!("SEP0000000E{i:04X}")).collect();
    let mut devices = String::from("devices:\n");
    for d in &extra {
        devices.push_str(&format!(
            "  - name: {d}\n    model: Cisco 8845\n    device_pool: Visiting_DP\n    em_enabled: true\n"
        ));
    }
    let visiting_text = std::fs::read_to_string(&visiting_def)
        .unwrap()
        .replacen("devices:\n", &devices, 1)
        .replace(
            "    allow_proxy: true\n",
            "    allow_proxy: true\n    max_concurrent_requests: 100\n",
        )
        .replace(
            "phones: [SEP00000000E0B1, SEP00000000E0B2]",
            &format!(
                "phones: [SEP00000000E0B1, SEP00000000E0B2, {}]",
                extra.join(", ")
            ),
        );
    std::fs::write(&visiting_def, visiting_text).unwrap();
    let home = emcc_node(&home_def, "127.0.1.1", home_port);
    let visiting = emcc_node(&visiting_def, "127.0.2.1", visiting_port);
    let (rc, out, err) = sync(&sftp, &[&home, &visiting], &[], "admin");
    assert_eq!(rc, 0, "{out}{err}");
    for srv in [&home, &visiting] {
        let (rc, out, err) = emcc_update(srv, false);
        assert_eq!(rc, 0, "{out}{err}");
    }

    // The visiting phone, on its own cluster.
    const PHONE: &str = "SEP00000000E0B1";
    let sim = crate::phone::Sim::start(
        &visiting,
        &[
            "--device",
            PHONE,
            "--first-ip",
            "127.0.2.10",
            "--auto-answer",
        ],
    );
    let visiting_sip = visiting.addr("sip_udp").to_string();
    let home_sip = home.addr("sip_udp").to_string();
    let s = wait_phone(&sim, PHONE, "registered at visiting", |s| {
        s["registered"] == true && s["server"] == visiting_sip.as_str()
    });
    assert_eq!(lines_of(&s), ["5001"]);

    // The stranger: no client certificate, then one of its own: refused before any work.
    let login_url = format!("https://127.0.1.1:{home_port}/ucm/emcc/v1/login");
    let body = format!(
        r#"{{"api":"ucm-emcc/1","cluster":"visiting","version":"14.0","userid":"traveler","device":{{"name":"{PHONE}","model":"Cisco 8845","security_mode":"non-secure","transport":"udp"}}}}"#
    );
    let (st, resp) = curl(&login_url, &["--data-binary", &body]);
    assert_eq!(st, 403, "{resp}");
    assert!(resp.contains("no client certificate"), "{resp}");
    let d = defs.path();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=stranger", "-keyout"])
        .arg(d.join("k.pem"))
        .arg("-out")
        .arg(d.join("c.pem"))
        .output()
        .unwrap();
    assert!(made.status.success());
    let (st, resp) = curl(
        &login_url,
        &[
            "--cert",
            d.join("c.pem").to_str().unwrap(),
            "--key",
            d.join("k.pem").to_str().unwrap(),
            "--data-binary",
            &body,
        ],
    );
    assert_eq!(st, 403, "{resp}");
    assert!(resp.contains("Tomcat-trust"), "{resp}");

    // The login: visiting hands it over, the phone cross-registers with home's node.
    let (rc, out) = em_login_at(&visiting, PHONE, "traveler");
    assert_eq!(rc, 0, "{out}\n{}\n{}", visiting.logs(), home.logs());
    let s = wait_phone(&sim, PHONE, "registered at home with 4001", |s| {
        s["registered"] == true && s["server"] == home_sip.as_str() && lines_of(s) == ["4001"]
    });
    assert_eq!(s["config"]["emcc"]["home_cluster"], "home", "{s:#}");
    assert_eq!(s["config"]["device_pool"], "EMCC_Roaming_DP", "{s:#}");
    // A second login at the same phone is refused (18); the user is logged in there.
    let (rc, out) = em_login_at(&visiting, PHONE, "traveler");
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("EM error 18"), "{out}");
    let (rc, out, err) = emcc_status(&home, true);
    assert_eq!(rc, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["emcc_devices"]["as_home"][0]["device"], PHONE, "{v}");
    assert_eq!(v["emcc_devices"]["as_home"][0]["slot"], "EMCC1", "{v}");
    assert_eq!(
        v["emcc_devices"]["as_home"][0]["profile"], "traveler-profile",
        "{v}"
    );
    let (rc, out, _) = emcc_status(&visiting, false);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("1 as visiting"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("visiting")
            && l.contains(PHONE)
            && l.contains("traveler")
            && l.contains("home")),
        "{out}"
    );

    // A call from home's gateway (SIPp) to traveler's DN rings the phone at the visiting
    // site, which answers.
    if crate::sipp::sipp_available() {
        let work = tempfile::tempdir().unwrap();
        let out = Command::new("sipp")
            .args(["-sn", "uac", "-s", "4001", &home_sip, "-i", "127.0.1.1"])
            .args([
                "-p",
                &gw_port.to_string(),
                "-m",
                "1",
                "-nostdin",
                "-timeout",
                "30s",
            ])
            .current_dir(work.path())
            .output()
            .expect("run sipp uac");
        assert_eq!(
            out.status.code(),
            Some(0),
            "the call to 4001 did not complete: {}\n{}",
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n"),
            home.logs()
        );
        let s = phone_state(&sim, PHONE);
        assert!(
            s["calls"].as_array().is_some_and(|c| !c.is_empty()),
            "{s:#}"
        );
    } else {
        skip_or_fail("sipp is not installed: the call to the EMCC phone is not tried");
    }

    // Logout at visiting: both slots freed, the phone back on its own line and node.
    let (rc, out) = em_at(&visiting, &["logout", "--device", PHONE]);
    assert_eq!(rc, 0, "{out}");
    let s = wait_phone(&sim, PHONE, "back at visiting with 5001", |s| {
        s["registered"] == true && s["server"] == visiting_sip.as_str() && lines_of(s) == ["5001"]
    });
    assert!(s["config"]["emcc"].is_null(), "{s:#}");
    for srv in [&home, &visiting] {
        let (rc, out, _) = emcc_status(srv, true);
        assert_eq!(rc, 0, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["emcc_devices"]["as_home"].as_array().map(Vec::len),
            Some(0),
            "{v}"
        );
        assert_eq!(
            v["emcc_devices"]["as_visiting"].as_array().map(Vec::len),
            Some(0),
            "{v}"
        );
    }

    // 50 logins at once for home's 6 slots: the database decides, exactly 6 succeed.
    let racers: Vec<_> = extra
        .iter()
        .map(|d| {
            let (d, http) = (d.clone(), visiting.addr("http").to_string());
            std::thread::spawn(move || {
                // "Busy" (26, the password checks' bound) is tried again, at most 20 times.
                for _ in 0..20 {
                    let out = ucm()
                        .args(["em", "login", "--server", &format!("http://{http}")])
                        .args([
                            "--app-user",
                            "emproxy",
                            "--device",
                            &d,
                            "--user",
                            "traveler",
                        ])
                        .env("UCM_EM_APP_PASSWORD", "emproxy")
                        .output()
                        .unwrap();
                    let text = format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    if !text.contains("EM error 26") {
                        return (out.status.code(), text);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                (None, "busy 20 times".to_string())
            })
        })
        .collect();
    let results: Vec<(Option<i32>, String)> =
        racers.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|(c, _)| *c == Some(0)).count();
    let full: Vec<&String> = results
        .iter()
        .filter(|(c, _)| *c != Some(0))
        .map(|(_, o)| o)
        .collect();
    assert_eq!(ok, 6, "{results:#?}");
    assert!(full.iter().all(|o| o.contains("EM error 33")), "{full:#?}");
    for srv in [&home, &visiting] {
        let (_, out, _) = emcc_status(srv, true);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let n = |k: &str| v["emcc_devices"][k].as_array().map(Vec::len);
        let want = if srv.addr("https").ip().to_string() == "127.0.1.1" {
            (Some(6), Some(0))
        } else {
            (Some(0), Some(6))
        };
        assert_eq!((n("as_home"), n("as_visiting")), want, "{v}");
    }
}

/// EMCC device slots in the database: 50 logins racing for the last 3 of 6 slots get exactly
/// 3; a device holds one slot per side; a freed slot is taken again, lowest first.
async fn emcc_slots(store: &ucm::store::Store) {
    use ucm::services::emcc::store::{EmccDeviceRow, EmccDevices, Role, SlotRefused};
    let row = |device: String| EmccDeviceRow {
        role: Role::Home,
        device,
        slot: 0,
        userid: "traveler".into(),
        remote_cluster: "visiting".into(),
        profile: "traveler-profile".into(),
        settings: "{}".into(),
        logged_in_at: 1,
        node: "home-pub".into(),
    };
    for i in 0..3 {
        let r = store
            .take_emcc_slot(&row(format!("SEP00000000A{i:03X}")), 6)
            .await;
        assert_eq!(r.map(|r| r.slot).ok(), Some(i + 1));
    }
    // The same device again on the same side: refused, naming the holder.
    match store
        .take_emcc_slot(&row("SEP00000000A000".into()), 6)
        .await
    {
        Err(SlotRefused::DeviceTaken(r)) => assert_eq!(r.slot, 1),
        other => panic!("{other:?}"),
    }
    // The other side has its own slots.
    let visiting = EmccDeviceRow {
        role: Role::Visiting,
        ..row("SEP00000000A000".into())
    };
    assert_eq!(
        store
            .take_emcc_slot(&visiting, 6)
            .await
            .map(|r| r.slot)
            .ok(),
        Some(1)
    );
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        let r = row(format!("SEP00000000B{i:03X}"));
        tasks.push(tokio::spawn(
            async move { store.take_emcc_slot(&r, 6).await },
        ));
    }
    let (mut ok, mut full) = (Vec::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => ok.push(r.slot),
            Err(SlotRefused::Full { cap: 6 }) => full += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    ok.sort();
    assert_eq!((ok, full), (vec![4, 5, 6], 47));
    assert_eq!(store.emcc_devices(Role::Home).await.unwrap().len(), 6);
    // A freed slot is the next one taken.
    let freed = store
        .free_emcc_slot(Role::Home, "SEP00000000A001")
        .await
        .unwrap();
    assert_eq!(freed.map(|r| r.slot), Some(2));
    assert_eq!(
        store
            .free_emcc_slot(Role::Home, "SEP00000000A001")
            .await
            .unwrap(),
        None
    );
    let again = store
        .take_emcc_slot(&row("SEP00000000C000".into()), 6)
        .await;
    assert_eq!(again.map(|r| r.slot).ok(), Some(2));
    assert_eq!(store.emcc_devices(Role::Visiting).await.unwrap().len(), 1);
}

#[tokio::test]
async fn r17_emcc_slots_hold_the_cap_sqlite() {
    let _lo = crate::common::beside_captures();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("ucm.db").display());
    let store = ucm::store::Store::open(&url).await.unwrap();
    emcc_slots(&store).await;
    store.close().await;
}

#[tokio::test]
async fn r17_emcc_slots_hold_the_cap_postgres() {
    let _lo = crate::common::beside_captures();
    let Some(db) = crate::common::PgDb::create().await else {
        return;
    };
    let store = ucm::store::Store::open(&db.url).await.unwrap();
    emcc_slots(&store).await;
    store.close().await;
    db.drop_db().await;
}

/// The automatic logout at the visiting side ends an EMCC login as a logout does: visiting
/// restarts after the login's time has come (the API's unit is minutes, so the test moves the
/// stored time rather than wait; the timers' own timing is their unit tests' business), logs
/// the phone out at start, frees its slot, tells home, which frees its own and resets the
/// phone; the phone comes back to its own line and node.
#[test]
fn r17_automatic_logout_at_the_visiting_side_brings_the_phone_back() {
    let _lo = crate::common::beside_captures();
    if !have("curl") {
        skip_or_fail("curl is needed");
        return;
    }
    let Some(sftp) = SftpServer::start() else {
        return;
    };
    let defs = tempfile::tempdir().unwrap();
    let (home_port, visiting_port) = (free_port("127.0.1.1"), free_port("127.0.2.1"));
    let tftp_port = free_port("127.0.2.1");
    let (home_def, visiting_def) = emcc_definitions(defs.path(), home_port, visiting_port);
    let home = emcc_node(&home_def, "127.0.1.1", home_port);
    let mut visiting = emcc_node_in(
        tempfile::tempdir().unwrap(),
        &visiting_def,
        "127.0.2.1",
        visiting_port,
        tftp_port,
    );
    let (rc, out, err) = sync(&sftp, &[&home, &visiting], &[], "admin");
    assert_eq!(rc, 0, "{out}{err}");
    for srv in [&home, &visiting] {
        let (rc, out, err) = emcc_update(srv, false);
        assert_eq!(rc, 0, "{out}{err}");
    }
    const PHONE: &str = "SEP00000000E0B1";
    let sim = crate::phone::Sim::start(
        &visiting,
        &[
            "--device",
            PHONE,
            "--first-ip",
            "127.0.2.11",
            "--auto-answer",
        ],
    );
    let home_sip = home.addr("sip_udp").to_string();
    let (rc, out) = em_at(
        &visiting,
        &[
            "login",
            "--device",
            PHONE,
            "--user",
            "traveler",
            "--duration",
            "1",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    wait_phone(&sim, PHONE, "registered at home", |s| {
        s["registered"] == true && s["server"] == home_sip.as_str() && lines_of(s) == ["4001"]
    });

    // The login's time comes while visiting is down.
    assert!(visiting.terminate().success());
    let data = std::mem::replace(&mut visiting.data_dir, tempfile::tempdir().unwrap());
    drop(visiting);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite:{}", data.path().join("ucm.db").display());
        let store = ucm::store::Store::open(&url).await.unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let done = sqlx::query("UPDATE em_logins SET logout_at = $1 WHERE device = $2")
            .bind(now - 1)
            .bind(PHONE)
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
        store.close().await;
    });
    let visiting = emcc_node_in(data, &visiting_def, "127.0.2.1", visiting_port, tftp_port);
    let visiting_sip = visiting.addr("sip_udp").to_string();
    let s = wait_phone(&sim, PHONE, "back at visiting with 5001", |s| {
        s["registered"] == true && s["server"] == visiting_sip.as_str() && lines_of(s) == ["5001"]
    });
    assert!(s["config"]["emcc"].is_null(), "{s:#}");
    for srv in [&home, &visiting] {
        let (_, out, _) = emcc_status(srv, true);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (
                v["emcc_devices"]["as_home"].as_array().map(Vec::len),
                v["emcc_devices"]["as_visiting"].as_array().map(Vec::len)
            ),
            (Some(0), Some(0)),
            "{v}"
        );
    }
}

/// Two EMCC clusters from the shipped definitions (each edited by the test), certificates
/// exchanged through OpenSSH's sftp server and each remote cluster updated: the sftp server
/// (kept alive), the definitions' folder, home and visiting.
fn two_clusters(
    edit_home: impl FnOnce(String) -> String,
    edit_visiting: impl FnOnce(String) -> String,
) -> Option<(SftpServer, tempfile::TempDir, Server, Server)> {
    if !have("curl") || !have("openssl") {
        skip_or_fail("curl and openssl are needed");
        return None;
    }
    let sftp = SftpServer::start()?;
    let defs = tempfile::tempdir().unwrap();
    let (home_port, visiting_port) = (free_port("127.0.1.1"), free_port("127.0.2.1"));
    let (home_def, visiting_def) = emcc_definitions(defs.path(), home_port, visiting_port);
    let text = edit_home(std::fs::read_to_string(&home_def).unwrap());
    std::fs::write(&home_def, text).unwrap();
    let text = edit_visiting(std::fs::read_to_string(&visiting_def).unwrap());
    std::fs::write(&visiting_def, text).unwrap();
    let home = emcc_node(&home_def, "127.0.1.1", home_port);
    let visiting = emcc_node(&visiting_def, "127.0.2.1", visiting_port);
    let (rc, out, err) = sync(&sftp, &[&home, &visiting], &[], "admin");
    assert_eq!(rc, 0, "{out}{err}");
    for srv in [&home, &visiting] {
        let (rc, out, err) = emcc_update(srv, false);
        assert_eq!(rc, 0, "{out}{err}");
    }
    Some((sftp, defs, home, visiting))
}

/// A free UDP port on `ip`.
fn free_udp_port(ip: &str) -> u16 {
    std::net::UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The visiting phone SEP00000000E0B1 as a `ucm phone sim` at the visiting cluster, logged in
/// by traveler and cross-registered with home.
fn traveler_at_home(home: &Server, visiting: &Server) -> crate::phone::Sim {
    const PHONE: &str = "SEP00000000E0B1";
    let sim = crate::phone::Sim::start(visiting, &["--device", PHONE, "--first-ip", "127.0.2.10"]);
    let visiting_sip = visiting.addr("sip_udp").to_string();
    wait_phone(&sim, PHONE, "registered at visiting", |s| {
        s["registered"] == true && s["server"] == visiting_sip.as_str()
    });
    let (rc, out) = em_login_at(visiting, PHONE, "traveler");
    assert_eq!(rc, 0, "{out}\n{}\n{}", visiting.logs(), home.logs());
    let home_sip = home.addr("sip_udp").to_string();
    wait_phone(&sim, PHONE, "registered at home with 4001", |s| {
        s["registered"] == true && s["server"] == home_sip.as_str() && lines_of(s) == ["4001"]
    });
    sim
}

/// Kills a background process when the test ends, whatever happens.
struct Bg(Child);
impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Figure 18-6 over the wire. traveler, logged in at visiting's phone SEP00000000E0B1 and so
/// registered with home, dials 911 and 95551234 on the phone (pushed `Dial:`). Home analyses
/// them with the phone's assembled CSS: 911 only in the roaming pool's Adjunct CSS, 9.! in the
/// profile's EMCC CSS; both lead to the Standard Local Route Group, which for an EMCC phone is
/// the EMCC SIP trunk, to the PSTN Access node visiting told in its remote cluster update
/// (home's trunk names a dead port). Visiting routes what arrives on its EMCC trunk by the
/// phone the INVITE names: its EMCC trunk's own device pool has no local route group here, so
/// only the phone's device pool (Visiting_DP, Local_RG) reaches the local gateway, SIPp, which
/// answers both calls: 911 as dialled, 5551234 after visiting's 9.! strips the access code.
/// The same 911 from a SIPp on home's gateway trunk (not an EMCC phone) finds no route.
#[test]
fn r17_emcc_phone_calls_use_the_assembled_css_and_leave_at_the_visiting_gateway() {
    let _lo = crate::common::beside_captures();
    if !crate::sipp::sipp_available() {
        skip_or_fail("sipp is not installed: the EMCC call routing is not tried");
        return;
    }
    const PHONE: &str = "SEP00000000E0B1";
    let gw_port = free_udp_port("127.0.2.1");
    let home_gw_port = free_udp_port("127.0.1.1");
    let Some((_sftp, _defs, home, visiting)) = two_clusters(
        |h| {
            h.replace(
                "destinations: [\"127.0.1.1:5090\"]",
                &format!("destinations: [\"127.0.1.1:{home_gw_port}\"]"),
            )
            // The test's hand on the phone's keypad: pushes Dial: to any phone.
            .replace(
                "application_users:\n",
                "application_users:\n  - userid: dialer\n    password: dialer\n    roles: [cti-control-all-devices]\n",
            )
        },
        |v| {
            v.replace(
                "destinations: [\"127.0.2.1:5090\"]",
                &format!("destinations: [\"127.0.2.1:{gw_port}\"]"),
            )
            .replace(
                "device_pools:\n",
                "device_pools:\n  - name: EMCC_Trunk_DP\n    node_group: [visiting-pub]\n    region: Default\n",
            )
            .replace(
                "    destinations: [\"127.0.1.1:5060\"]\n    device_pool: Visiting_DP\n",
                "    destinations: [\"127.0.1.1:5060\"]\n    device_pool: EMCC_Trunk_DP\n",
            )
        },
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let messages = work.path().join("gw-messages.log");
    let mut uas = Bg(Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.2.1", "-p", &gw_port.to_string()])
        .args(["-m", "2", "-nostdin", "-timeout", "90s", "-trace_msg"])
        .arg("-message_file")
        .arg(&messages)
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp uas"));
    let sim = traveler_at_home(&home, &visiting);
    let phone = sim.http(PHONE);
    for number in ["911", "95551234"] {
        let (st, body) = crate::phone::push(
            phone,
            Some(("dialer", "dialer")),
            &[&format!("Dial:{number}")],
        );
        assert_eq!(st, 200, "{body}");
        assert!(body.contains("Status=\"0\""), "Dial:{number}: {body}");
        let s = wait_phone(&sim, PHONE, &format!("connected to {number}"), |s| {
            s["calls"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["state"] == "connected" && c["remote_number"] == number)
            })
        });
        assert!(s["registered"] == true, "{s:#}");
        let (st, body) = crate::phone::push(phone, Some(("dialer", "dialer")), &["Key:Onhook"]);
        assert_eq!(st, 200, "{body}");
        wait_phone(&sim, PHONE, "idle", |s| {
            s["calls"].as_array().is_some_and(|c| {
                c.iter()
                    .all(|c| c["state"] != "connected" && c["state"] != "dialing")
            })
        });
    }
    // SIPp answered both calls and saw them end.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = uas.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the gateway SIPp did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&messages).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log}\n{}", visiting.logs());
    let visiting_sip = visiting.addr("sip_udp");
    for number in ["911", "5551234"] {
        assert!(
            log.contains(&format!("INVITE sip:{number}@127.0.2.1:{gw_port}")),
            "{number} did not reach the visiting gateway:\n{log}"
        );
    }
    // The gateway's calls came from the visiting node (the PSTN leaves at the visiting site).
    assert!(
        log.contains(&format!(
            "Via: SIP/2.0/UDP 127.0.2.1:{}",
            visiting_sip.port()
        )),
        "{log}"
    );
    assert!(!log.contains("95551234"), "{log}");

    // A caller of home that is no EMCC phone (home's own gateway) dialling 911: the Adjunct CSS
    // and the EMCC trunk are the EMCC phone's only, so home finds no route for it.
    let out = Command::new("sipp")
        .args(["-sn", "uac", "-s", "911", &home.addr("sip_udp").to_string()])
        .args(["-i", "127.0.1.1", "-p", &home_gw_port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "20s"])
        .current_dir(work.path())
        .output()
        .expect("run sipp uac");
    assert_ne!(
        out.status.code(),
        Some(0),
        "911 from home's gateway was routed"
    );
    assert!(
        home.logs().contains("digit analysis refused the call"),
        "{}",
        home.logs()
    );
}

/// GET the visiting cluster's EM application page for `query` (the phone's EM service form).
fn emapp(srv: &Server, query: &str) -> String {
    let (st, body) = curl(
        &format!("http://{}/emapp/EMAppServlet?{query}", srv.addr("http")),
        &[],
    );
    assert_eq!(st, 200, "{body}");
    body
}

/// `ucm emcc status --json` of a node.
fn status_json(srv: &Server) -> serde_json::Value {
    let (rc, out, err) = emcc_status(srv, true);
    assert_eq!(rc, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap()
}

fn count(v: &serde_json::Value, side: &str) -> usize {
    v["emcc_devices"][side]
        .as_array()
        .map_or(usize::MAX, Vec::len)
}

/// Issue 17, the EM application across clusters, and a logout while the home is down.
/// Visiting holds a local copy of traveler *without* the home-cluster flag and another PIN
/// (99999): typed at the phone's EM application, that PIN is refused and traveler's home PIN
/// (12345) logs in, so the PIN is checked by the home, not locally; the refusal frees
/// visiting's slot. Then home stops, traveler logs out at visiting: visiting frees its slot,
/// tells the phone itself to fetch its configuration (back on 5001 at visiting) and keeps the
/// logout for the home; home starts again (still holding its slot from its database) and is
/// told within seconds: both sides end with no EMCC device and nothing pending.
#[test]
fn r17_emapp_pin_is_checked_at_home_and_a_logout_outlives_an_unreachable_home() {
    let _lo = crate::common::beside_captures();
    const PHONE: &str = "SEP00000000E0B1";
    let Some((_sftp, defs, mut home, visiting)) = two_clusters(
        |h| h,
        |v| {
            v.replace(
                "application_users:\n",
                "end_users:\n  - userid: traveler\n    last_name: Local copy\n    password: other\n    pin: \"99999\"\n    home_cluster: false\n\napplication_users:\n",
            )
        },
    ) else {
        return;
    };
    let sim = crate::phone::Sim::start(&visiting, &["--device", PHONE, "--first-ip", "127.0.2.12"]);
    let visiting_sip = visiting.addr("sip_udp").to_string();
    let home_sip = home.addr("sip_udp").to_string();
    wait_phone(&sim, PHONE, "registered at visiting", |s| {
        s["registered"] == true && s["server"] == visiting_sip.as_str()
    });

    // The local copy's PIN is not the user's: refused (201) by the home.
    let page = emapp(
        &visiting,
        &format!("device={PHONE}&userid=traveler&pin=99999"),
    );
    assert!(
        page.contains("Please try to login again (201)"),
        "{page}\n{}\n{}",
        visiting.logs(),
        home.logs()
    );
    assert!(
        home.logs().contains("EMCC: login at the home refused"),
        "{}",
        home.logs()
    );
    let v = status_json(&visiting);
    assert_eq!(count(&v, "as_visiting"), 0, "{v}");
    assert_eq!(count(&status_json(&home), "as_home"), 0);
    // The home's PIN: logged in, the phone cross-registers.
    let page = emapp(
        &visiting,
        &format!("device={PHONE}&userid=traveler&pin=12345"),
    );
    assert!(
        page.contains("Welcome, traveler"),
        "{page}\n{}",
        visiting.logs()
    );
    wait_phone(&sim, PHONE, "registered at home with 4001", |s| {
        s["registered"] == true && s["server"] == home_sip.as_str() && lines_of(s) == ["4001"]
    });

    // The home goes down; the logout at visiting still brings the phone back.
    let home_port = home.addr("https").port();
    assert!(home.terminate().success());
    let data = std::mem::replace(&mut home.data_dir, tempfile::tempdir().unwrap());
    drop(home);
    let (rc, out) = em_at(&visiting, &["logout", "--device", PHONE]);
    assert_eq!(rc, 0, "{out}");
    // The phone first takes its lines off the dead home (Expires: 0, unanswered until its
    // transaction times out, Timer F = 32 s), then registers at visiting.
    let s = wait_phone_for(&sim, PHONE, "back at visiting with 5001", 60, |s| {
        s["registered"] == true && s["server"] == visiting_sip.as_str() && lines_of(s) == ["5001"]
    });
    assert!(s["config"]["emcc"].is_null(), "{s:#}");
    let v = status_json(&visiting);
    assert_eq!(count(&v, "as_visiting"), 0, "{v}");
    assert_eq!(v["pending_logouts"][0]["device"], PHONE, "{v}");
    assert_eq!(v["pending_logouts"][0]["home"], "home", "{v}");
    let (_, text, _) = emcc_status(&visiting, false);
    assert!(
        text.contains("logouts not yet acknowledged by the home: 1"),
        "{text}"
    );

    // The home comes back with its slot still taken, and is told.
    let home_def = defs.path().join("emcc-home.yaml");
    let home = emcc_node_in(data, &home_def, "127.0.1.1", home_port, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (h, v) = (status_json(&home), status_json(&visiting));
        let pending = v["pending_logouts"].as_array().map_or(usize::MAX, Vec::len);
        if count(&h, "as_home") == 0 && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the home was not told within 30 s: {h}\n{v}\n{}",
            visiting.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        visiting
            .logs()
            .contains("a pending logout told to the home"),
        "{}",
        visiting.logs()
    );
    // The phone stays at visiting.
    let s = phone_state(&sim, PHONE);
    assert_eq!(s["server"], visiting_sip.as_str(), "{s:#}");
}

/// A node of a cluster on a shared database (`--db`), bound to `ip`, HTTPS on `https_port`
/// (0: any), SIP on `sip_port` (0: any).
fn emcc_db_node(
    def: &Path,
    db: &str,
    name: &str,
    ip: &str,
    https_port: u16,
    sip_port: u16,
) -> Server {
    let data_dir = tempfile::tempdir().unwrap();
    let mut cmd = ucm();
    cmd.arg("serve")
        .arg("--config")
        .arg(def)
        .args(["--db", db, "--node", name, "--bind", ip])
        .args(["--https-port", &https_port.to_string(), "--http-port", "0"])
        .args([
            "--tftp-http-port",
            "0",
            "--tftp-port",
            "0",
            "--sips-port",
            "0",
        ])
        .args(["--sip-port", &sip_port.to_string(), "--data-dir"])
        .arg(data_dir.path())
        .env("UCM_LOG", "info");
    let (child, ready, stderr) = crate::common::spawn_ready(cmd, name, Duration::from_secs(60));
    Server {
        child,
        ready,
        data_dir,
        stderr,
        seen: Default::default(),
    }
}

/// Issue 17 on a multi-node home: home has two nodes on one PostgreSQL database, home-pub
/// (which the visiting cluster names, and which takes the login) and home-sub (the only member
/// of the EMCC roaming pool's Unified CM group). The EMCC device home-pub adds reaches home-sub
/// through the change feed: the phone registers traveler's 4001 with home-sub, and SIPp on
/// home's gateway reaches it there. The logout, taken by home-pub, reaches home-sub the same
/// way, which resets the phone registered with it: the phone goes back to visiting.
#[tokio::test(flavor = "multi_thread")]
async fn r17_a_two_node_home_on_postgres_serves_the_emcc_device_from_either_node() {
    let _lo = crate::common::beside_captures();
    if !have("curl") || !have("openssl") || !crate::sipp::sipp_available() {
        skip_or_fail("curl, openssl and sipp are needed");
        return;
    }
    let Some(db) = crate::common::PgDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || two_node_home(&url)).await;
    db.drop_db().await;
    result.unwrap();
}

fn two_node_home(url: &str) {
    const PHONE: &str = "SEP00000000E0B1";
    let Some(sftp) = SftpServer::start() else {
        return;
    };
    let defs = tempfile::tempdir().unwrap();
    let (home_port, visiting_port) = (free_port("127.0.1.1"), free_port("127.0.2.1"));
    let (home_def, visiting_def) = emcc_definitions(defs.path(), home_port, visiting_port);
    // The nodes name each other's SIP ports (the intra-cluster trunk knows a node by them).
    let sub_sip = free_udp_port("127.0.1.2");
    let pub_sip = free_udp_port("127.0.1.1");
    let gw_port = free_udp_port("127.0.1.1");
    let text = std::fs::read_to_string(&home_def)
        .unwrap()
        .replace(
            "  - name: home-pub\n    address: 127.0.1.1\n",
            &format!("  - name: home-pub\n    address: 127.0.1.1\n    ports: {{sip: {pub_sip}}}\n  - name: home-sub\n    address: 127.0.1.2\n    ports: {{sip: {sub_sip}}}\n"),
        )
        .replace(
            "  - name: EMCC_Roaming_DP\n    node_group: [home-pub]\n",
            "  - name: EMCC_Roaming_DP\n    node_group: [home-sub]\n",
        )
        .replace(
            "destinations: [\"127.0.1.1:5090\"]",
            &format!("destinations: [\"127.0.1.1:{gw_port}\"]"),
        );
    std::fs::write(&home_def, text).unwrap();
    let home_pub = emcc_db_node(&home_def, url, "home-pub", "127.0.1.1", home_port, pub_sip);
    let home_sub = emcc_db_node(&home_def, url, "home-sub", "127.0.1.2", 0, sub_sip);
    let visiting = emcc_node(&visiting_def, "127.0.2.1", visiting_port);
    let (rc, out, err) = sync(&sftp, &[&home_pub, &visiting], &[], "admin");
    assert_eq!(rc, 0, "{out}{err}");
    for srv in [&home_pub, &visiting] {
        let (rc, out, err) = emcc_update(srv, false);
        assert_eq!(rc, 0, "{out}{err}");
    }
    let sim = crate::phone::Sim::start(
        &visiting,
        &[
            "--device",
            PHONE,
            "--first-ip",
            "127.0.2.13",
            "--auto-answer",
        ],
    );
    let visiting_sip = visiting.addr("sip_udp").to_string();
    wait_phone(&sim, PHONE, "registered at visiting", |s| {
        s["registered"] == true && s["server"] == visiting_sip.as_str()
    });
    let (rc, out) = em_login_at(&visiting, PHONE, "traveler");
    assert_eq!(rc, 0, "{out}\n{}", home_pub.logs());
    let sub = format!("127.0.1.2:{sub_sip}");
    wait_phone(&sim, PHONE, "registered at home-sub with 4001", |s| {
        s["registered"] == true && s["server"] == sub.as_str() && lines_of(s) == ["4001"]
    });
    // A call from home's gateway, through home-pub, rings the phone registered at home-sub.
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("sipp")
        .args([
            "-sn",
            "uac",
            "-s",
            "4001",
            &home_pub.addr("sip_udp").to_string(),
        ])
        .args(["-i", "127.0.1.1", "-p", &gw_port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "30s"])
        .current_dir(work.path())
        .output()
        .expect("run sipp uac");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the call to 4001 did not complete:\n{}\n{}",
        home_pub.logs(),
        home_sub.logs()
    );
    // Logout: home-pub frees the slot, home-sub hears it and resets the phone.
    let (rc, out) = em_at(&visiting, &["logout", "--device", PHONE]);
    assert_eq!(rc, 0, "{out}");
    let s = wait_phone(&sim, PHONE, "back at visiting with 5001", |s| {
        s["registered"] == true && s["server"] == visiting_sip.as_str() && lines_of(s) == ["5001"]
    });
    // Only home-sub could tell it (home-pub resets only the phones registered with it).
    assert!(s["config"]["emcc"].is_null(), "{s:#}");
}

/// Issue 17: a logout typed at the visiting phone's EM application by user ID and PIN (from
/// another device: the request does not come from the phone) is checked at the user's home,
/// as the login is. Visiting holds a local copy of traveler without the home-cluster flag and
/// with another PIN (99999): that PIN, which a local check would take, is refused (201) by the
/// home and traveler stays logged in (still registered at home); the home's PIN (12345) logs
/// out and the phone goes back to its own line at visiting.
#[test]
fn r17_emapp_logout_by_user_and_pin_is_checked_at_the_home() {
    let _lo = crate::common::beside_captures();
    const PHONE: &str = "SEP00000000E0B1";
    let Some((_sftp, _defs, home, visiting)) = two_clusters(
        |h| h,
        |v| {
            v.replace(
                "application_users:\n",
                "end_users:\n  - userid: traveler\n    last_name: Local copy\n    password: other\n    pin: \"99999\"\n    home_cluster: false\n\napplication_users:\n",
            )
        },
    ) else {
        return;
    };
    let sim = traveler_at_home(&home, &visiting);
    let home_sip = home.addr("sip_udp").to_string();
    let visiting_sip = visiting.addr("sip_udp").to_string();
    // Not from the phone: the form asks for the logged-in user's ID and PIN.
    let page = emapp(&visiting, &format!("device={PHONE}&logout=true"));
    assert!(page.contains("Enter the logged-in user"), "{page}");
    // The local copy's PIN: refused by the home.
    let page = emapp(
        &visiting,
        &format!("device={PHONE}&logout=true&userid=traveler&pin=99999"),
    );
    assert!(
        page.contains("Please try to log out again (201)"),
        "{page}\n{}\n{}",
        visiting.logs(),
        home.logs()
    );
    assert!(
        visiting
            .logs()
            .contains("EMCC: logout PIN refused by the home"),
        "{}",
        visiting.logs()
    );
    assert!(
        home.logs().contains("EMCC: logout PIN checked at the home"),
        "{}",
        home.logs()
    );
    assert_eq!(count(&status_json(&visiting), "as_visiting"), 1);
    assert_eq!(count(&status_json(&home), "as_home"), 1);
    let s = phone_state(&sim, PHONE);
    assert_eq!(s["server"], home_sip.as_str(), "{s:#}");
    // Another user with the right PIN of the logged-in one: refused the same way.
    let page = emapp(
        &visiting,
        &format!("device={PHONE}&logout=true&userid=someone&pin=12345"),
    );
    assert!(page.contains("Please try to log out again (201)"), "{page}");
    assert_eq!(count(&status_json(&home), "as_home"), 1);
    // The home's PIN: logged out, the phone comes back.
    let page = emapp(
        &visiting,
        &format!("device={PHONE}&logout=true&userid=traveler&pin=12345"),
    );
    assert!(page.contains("Logged out."), "{page}\n{}", visiting.logs());
    wait_phone(&sim, PHONE, "back at visiting with 5001", |s| {
        s["registered"] == true && s["server"] == visiting_sip.as_str() && lines_of(s) == ["5001"]
    });
    assert_eq!(count(&status_json(&visiting), "as_visiting"), 0);
    assert_eq!(count(&status_json(&home), "as_home"), 0);
}

/// Issue 17: the visiting side's EMCC routing follows a new definition. Visiting runs on
/// PostgreSQL with SEP00000000E0B1 not yet an EMCC phone; its EMCC trunk's own device pool
/// has no local route group, so a call on that trunk reaches the local gateway only as an
/// EMCC call of a phone named in it. The definition is imported again (`ucm db import`) with
/// E0B1 among the EMCC phones; the running node hears it through the change feed. traveler
/// logs in at E0B1 and dials 911: home sends it back over the EMCC trunk naming E0B1, and
/// visiting, which must now know E0B1 as an EMCC phone, routes it to its gateway (SIPp).
#[tokio::test(flavor = "multi_thread")]
async fn r17_a_definition_import_refreshes_the_visiting_emcc_routing() {
    let _lo = crate::common::beside_captures();
    if !have("curl") || !have("openssl") || !crate::sipp::sipp_available() {
        skip_or_fail("curl, openssl and sipp are needed");
        return;
    }
    let Some(db) = crate::common::PgDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || visiting_reload(&url)).await;
    db.drop_db().await;
    result.unwrap();
}

fn visiting_reload(url: &str) {
    const PHONE: &str = "SEP00000000E0B1";
    let Some(sftp) = SftpServer::start() else {
        return;
    };
    let defs = tempfile::tempdir().unwrap();
    let (home_port, visiting_port) = (free_port("127.0.1.1"), free_port("127.0.2.1"));
    let (home_def, visiting_def) = emcc_definitions(defs.path(), home_port, visiting_port);
    let gw_port = free_udp_port("127.0.2.1");
    let text = std::fs::read_to_string(&home_def).unwrap().replace(
        "application_users:\n",
        "application_users:\n  - userid: dialer\n    password: dialer\n    roles: [cti-control-all-devices]\n",
    );
    std::fs::write(&home_def, text).unwrap();
    let after = std::fs::read_to_string(&visiting_def)
        .unwrap()
        .replace(
            "destinations: [\"127.0.2.1:5090\"]",
            &format!("destinations: [\"127.0.2.1:{gw_port}\"]"),
        )
        .replace(
            "device_pools:\n",
            "device_pools:\n  - name: EMCC_Trunk_DP\n    node_group: [visiting-pub]\n    region: Default\n",
        )
        .replace(
            "    destinations: [\"127.0.1.1:5060\"]\n    device_pool: Visiting_DP\n",
            "    destinations: [\"127.0.1.1:5060\"]\n    device_pool: EMCC_Trunk_DP\n",
        );
    let before = after.replace(
        "phones: [SEP00000000E0B1, SEP00000000E0B2]",
        "phones: [SEP00000000E0B2]",
    );
    assert_ne!(
        before, after,
        "emcc-visiting.yaml changed: update this test"
    );
    std::fs::write(&visiting_def, &before).unwrap();
    let after_def = write_file(defs.path(), "emcc-visiting-after.yaml", &after);
    let home = emcc_node(&home_def, "127.0.1.1", home_port);
    let visiting = emcc_db_node(
        &visiting_def,
        url,
        "visiting-pub",
        "127.0.2.1",
        visiting_port,
        0,
    );
    let (rc, out, err) = sync(&sftp, &[&home, &visiting], &[], "admin");
    assert_eq!(rc, 0, "{out}{err}");
    for srv in [&home, &visiting] {
        let (rc, out, err) = emcc_update(srv, false);
        assert_eq!(rc, 0, "{out}{err}");
    }
    // Before the import E0B1 is no EMCC phone: no login across clusters at it.
    let (rc, out) = em_login_at(&visiting, PHONE, "traveler");
    assert_ne!(rc, 0, "{out}");
    let o = ucm()
        .args(["db", "import"])
        .arg(&after_def)
        .args(["--db", url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    visiting.wait_for_log("definition reloaded");

    let work = tempfile::tempdir().unwrap();
    let messages = work.path().join("gw-messages.log");
    let mut uas = Bg(Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.2.1", "-p", &gw_port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "60s", "-trace_msg"])
        .arg("-message_file")
        .arg(&messages)
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp uas"));
    let sim = traveler_at_home(&home, &visiting);
    let phone = sim.http(PHONE);
    let (st, body) = crate::phone::push(phone, Some(("dialer", "dialer")), &["Dial:911"]);
    assert_eq!(st, 200, "{body}");
    wait_phone(&sim, PHONE, "connected to 911", |s| {
        s["calls"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["state"] == "connected" && c["remote_number"] == "911")
        })
    });
    let (st, body) = crate::phone::push(phone, Some(("dialer", "dialer")), &["Key:Onhook"]);
    assert_eq!(st, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = uas.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the gateway SIPp did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&messages).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log}\n{}", visiting.logs());
    assert!(
        log.contains(&format!("INVITE sip:911@127.0.2.1:{gw_port}")),
        "911 did not reach the visiting gateway:\n{log}"
    );
}
