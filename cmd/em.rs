//! `ucm em`: Extension Mobility from scripts, over the EM service API (so it works against
//! Cisco Unified CM too). Exit codes: 0 success, 1 the service refused (its EM error code and
//! meaning are printed), 2 usage, input or an unreachable service.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand};
use ucm::client::em::{self, EmCallError, EmClient, LoginEntry};
use ucm::services::em::policy::MAX_LOGIN_MINUTES;
use ucm::wire::em::{self as api, DeviceUser};

use crate::client_args::ServerArgs;
use crate::{password, print_out, Failure, APP_PASSWORD_ENV, PASSWORD_ENV};

#[derive(Subcommand)]
pub enum Command {
    /// Log a user in on a device (or many, with --from).
    Login(LoginArgs),
    /// Log a device out.
    Logout(LogoutArgs),
    /// Who is logged in on a device, or where a user is logged in.
    Status(StatusArgs),
}

#[derive(Args)]
#[command(mut_arg("server", |a| a.help(
    "The EM service: a base URL (the standard path is added) or the full servlet URL"
)))]
pub struct Conn {
    #[command(flatten)]
    srv: ServerArgs,
    /// An application user with EM proxy rights, acting for any user.
    #[arg(long, env = "UCM_APP_USER", value_name = "USER")]
    app_user: Option<String>,
    /// Read the application user's password from the first line of stdin (otherwise the
    /// environment variable UCM_APP_PASSWORD).
    #[arg(long, requires = "app_user", conflicts_with = "password_stdin")]
    app_password_stdin: bool,
    /// Act as the user themselves (--user), reading their password from the first line of stdin
    /// (otherwise the environment variable UCM_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
}

impl Conn {
    fn json(&self) -> bool {
        self.srv.client.json
    }
}

#[derive(Args)]
pub struct LoginArgs {
    #[command(flatten)]
    conn: Conn,
    /// The device to log in on.
    #[arg(long, value_name = "SEP<MAC>", required_unless_present = "from")]
    device: Option<String>,
    /// The user to log in (with --app-user, any user; else the user acting for themselves).
    #[arg(long, required_unless_present = "from")]
    user: Option<String>,
    /// The device profile [default: the user's default profile].
    #[arg(long)]
    profile: Option<String>,
    /// Log out automatically after this many minutes (1 to 10080, 168 hours).
    #[arg(
        long,
        value_name = "MIN",
        conflicts_with = "indefinite",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LOGIN_MINUTES))
    )]
    duration: Option<u32>,
    /// No automatic logout.
    #[arg(long)]
    indefinite: bool,
    /// Log in many: a CSV file of `device,user[,profile]` lines (`#` comments allowed).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["device", "user", "profile"])]
    from: Option<PathBuf>,
    /// Requests in flight at once with --from (the service's Maximum Concurrent Requests
    /// refuses more with error 26).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

#[derive(Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    conn: Conn,
    /// The device to log out.
    #[arg(long, value_name = "SEP<MAC>")]
    device: String,
    /// The user acting for themselves (with --password-stdin).
    #[arg(long)]
    user: Option<String>,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    conn: Conn,
    /// Who is logged in on this device.
    #[arg(
        long,
        value_name = "SEP<MAC>",
        required_unless_present = "user",
        conflicts_with = "user"
    )]
    device: Option<String>,
    /// Where this user is logged in.
    #[arg(long)]
    user: Option<String>,
}

/// The API credentials: the application user (password from stdin or UCM_APP_PASSWORD) or
/// the user themselves (password from stdin or UCM_PASSWORD). Never from a flag (`ps`).
fn credentials(conn: &Conn, user: Option<&str>) -> Result<(String, String), Failure> {
    if let Some(app) = &conn.app_user {
        let pw = password(
            conn.app_password_stdin,
            APP_PASSWORD_ENV,
            "UCM_EM_APP_PASSWORD",
            "application user's password",
        )?;
        return Ok((app.clone(), pw));
    }
    let Some(user) = user else {
        return Err(Failure::Input(
            "give --app-user (EM proxy rights) or --user with --password-stdin".into(),
        ));
    };
    let pw = password(
        conn.password_stdin,
        PASSWORD_ENV,
        "UCM_EM_PASSWORD",
        "password for --user (or give --app-user)",
    )?;
    Ok((user.to_string(), pw))
}

fn client(conn: &Conn, user: Option<&str>) -> Result<EmClient, Failure> {
    let (id, pw) = credentials(conn, user)?;
    EmClient::new(&conn.srv.server, &id, &pw, &conn.srv.client.options())
        .map_err(|e| Failure::Input(e.to_string()))
}

fn failure(e: EmCallError) -> Failure {
    match e {
        EmCallError::Refused(_) => Failure::Check(format!("ucm: {e}")),
        EmCallError::Transport(m) => Failure::Input(m),
    }
}

pub async fn run(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::Login(a) => login(a).await,
        Command::Logout(a) => {
            let c = client(&a.conn, a.user.as_deref())?;
            c.logout(&a.device).await.map_err(failure)?;
            if a.conn.json() {
                print_out(&format!(
                    "{}\n",
                    serde_json::json!({"device": a.device, "result": "logged out"})
                ))
            } else {
                print_out(&format!("{}: logged out\n", a.device))
            }
        }
        Command::Status(a) => status(a).await,
    }
}

fn duration(a: &LoginArgs) -> Option<api::Duration> {
    match (a.duration, a.indefinite) {
        (Some(m), _) => Some(api::Duration::Minutes(m)),
        (None, true) => Some(api::Duration::Indefinite),
        (None, false) => None,
    }
}

async fn login(a: LoginArgs) -> Result<(), Failure> {
    if let Some(file) = &a.from {
        return bulk_login(&a, file).await;
    }
    let (Some(device), Some(user)) = (&a.device, &a.user) else {
        return Err(Failure::Input("--device and --user are required".into()));
    };
    let c = client(&a.conn, Some(user))?;
    c.login(device, user, a.profile.as_deref(), duration(&a))
        .await
        .map_err(failure)?;
    if a.conn.json() {
        print_out(&format!(
            "{}\n",
            serde_json::json!({"device": device, "user": user, "result": "logged in"})
        ))
    } else {
        print_out(&format!("{device}: {user} logged in\n"))
    }
}

fn read_entries(file: &PathBuf) -> Result<Vec<LoginEntry>, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Input(format!("{}: {e}", file.display())))?;
    em::parse_login_list(&text).map_err(|bad| {
        Failure::Input(format!(
            "{}:{}: expected device,user[,profile], got {:?}",
            file.display(),
            bad.line,
            bad.text
        ))
    })
}

async fn bulk_login(a: &LoginArgs, file: &PathBuf) -> Result<(), Failure> {
    let entries = read_entries(file)?;
    if a.conn.app_user.is_none() {
        return Err(Failure::Input(
            "--from logs in many users: give --app-user (EM proxy rights)".into(),
        ));
    }
    let c = Arc::new(client(&a.conn, None)?);
    let started = Instant::now();
    let total = entries.len();
    // Progress on a terminal only: scripts read the result lines.
    let progress = std::io::stderr().is_terminal();
    let results = c
        .login_many(entries, duration(a), a.concurrency, |done| {
            if progress {
                eprint!("\r{done}/{total} logins");
            }
        })
        .await;
    if progress {
        eprintln!();
    }
    let transport_error = results.iter().find_map(|(_, r)| match r {
        Err(EmCallError::Transport(m)) => Some(m.clone()),
        _ => None,
    });
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let secs = started.elapsed().as_secs_f64();
    if a.conn.json() {
        let items: Vec<_> = results
            .iter()
            .map(|(e, r)| match r {
                Ok(()) => serde_json::json!({"line": e.line, "device": e.device, "user": e.user, "result": "logged in"}),
                Err(EmCallError::Refused(x)) => serde_json::json!({"line": e.line, "device": e.device, "user": e.user, "result": "refused", "code": x.code, "meaning": api::code_meaning(x.code), "message": x.message}),
                Err(EmCallError::Transport(m)) => serde_json::json!({"line": e.line, "device": e.device, "user": e.user, "result": "error", "message": m}),
            })
            .collect();
        print_out(&format!(
            "{}\n",
            serde_json::json!({"total": total, "failed": failed, "seconds": secs, "results": items})
        ))?;
    } else {
        let mut out = String::new();
        for (e, r) in &results {
            if let Err(err) = r {
                out.push_str(&format!(
                    "line {}: {} {}: {err}\n",
                    e.line, e.device, e.user
                ));
            }
        }
        out.push_str(&format!(
            "{} of {total} logged in, {failed} failed, in {secs:.2} s\n",
            total - failed
        ));
        print_out(&out)?;
    }
    match (transport_error, failed) {
        (Some(m), _) => Err(Failure::Input(m)),
        (None, 0) => Ok(()),
        (None, n) => Err(Failure::Check(format!("{n} logins refused"))),
    }
}

async fn status(a: StatusArgs) -> Result<(), Failure> {
    let c = client(&a.conn, a.user.as_deref())?;
    if let Some(device) = &a.device {
        let r = c.device_users(&[device]).await.map_err(failure)?;
        let (name, state) = r
            .into_iter()
            .next()
            .ok_or_else(|| Failure::Input("the service answered no device".into()))?;
        let (text, json) = match state {
            DeviceUser::LoggedIn(u) => (
                format!("{name}: {u} logged in\n"),
                serde_json::json!({"device": name, "user": u}),
            ),
            DeviceUser::None { last } => (
                match &last {
                    Some(l) => format!("{name}: nobody logged in (last: {l})\n"),
                    None => format!("{name}: nobody logged in\n"),
                },
                serde_json::json!({"device": name, "user": null, "last_user": last}),
            ),
            DeviceUser::DoesNotExist => {
                return Err(Failure::Check(format!(
                    "ucm: EM error 11 ({}): {name}",
                    api::code_meaning(11)
                )))
            }
        };
        return if a.conn.json() {
            print_out(&format!("{json}\n"))
        } else {
            print_out(&text)
        };
    }
    let user = a.user.clone().unwrap_or_default();
    let r = c.user_devices(&[&user]).await.map_err(failure)?;
    let (id, devices) = r
        .into_iter()
        .next()
        .ok_or_else(|| Failure::Input("the service answered no user".into()))?;
    let Some(devices) = devices else {
        return Err(Failure::Check(format!(
            "ucm: EM error 23 ({}): {id}",
            api::code_meaning(23)
        )));
    };
    if a.conn.json() {
        print_out(&format!(
            "{}\n",
            serde_json::json!({"user": id, "devices": devices})
        ))
    } else if devices.is_empty() {
        print_out(&format!("{id}: not logged in\n"))
    } else {
        print_out(&format!("{id}: logged in on {}\n", devices.join(", ")))
    }
}
