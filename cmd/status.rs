//! `ucm status`: the live cluster as a node sees it (`GET /ucm/status`, for an application
//! user): registered phones, active calls, Extension Mobility logins, running pages,
//! locked-out users.

use clap::Args as ClapArgs;

use crate::client_args::ServerArgs;
use crate::{print_out, Failure};

#[derive(ClapArgs)]
#[command(after_help = "Example:\n  \
    UCM_PASSWORD=paging ucm status --server http://127.0.0.1:8080 --user paging\n\
The same view is the page at the node's `/` in a browser.\n\
Exit codes: 0 shown, 1 the credentials were refused, 2 usage or unreachable.")]
pub struct Args {
    /// An application user of the cluster (the status is for application users).
    #[arg(long, env = "UCM_APP_USER")]
    user: String,
    /// Read --user's password from the first line of stdin (otherwise the environment variable
    /// UCM_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    srv: ServerArgs,
}

pub async fn run(a: Args) -> Result<(), Failure> {
    let password = crate::password(
        a.password_stdin,
        crate::PASSWORD_ENV,
        crate::PASSWORD_ENV,
        "password for --user",
    )?;
    let http = ucm::client::http_client(&a.srv.client.options())?;
    let url = format!("{}/ucm/status", a.srv.server.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .basic_auth(&a.user, Some(&password))
        .send()
        .await
        .map_err(|e| Failure::Input(format!("{url}: {}", ucm::client::describe_error(&e))))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| Failure::Input(format!("{url}: {}", ucm::client::describe_error(&e))))?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(Failure::Check(format!(
            "ucm: {url}: {status}: {}",
            body.trim()
        )));
    }
    if !status.is_success() {
        return Err(Failure::Input(format!(
            "{url}: HTTP {status}: {}",
            body.trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| Failure::Input(format!("{url}: not a status document: {e}")))?;
    if a.srv.client.json {
        return print_out(&format!("{v}\n"));
    }
    print_out(&render(&v))
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        serde_json::Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Unix seconds as UTC `YYYY-MM-DD HH:MM:SS`.
fn when(v: &serde_json::Value) -> String {
    match v.as_i64() {
        Some(secs) if secs >= 0 => ucm::client::page::utc_time(secs as u64 * 1000),
        _ => text(v),
    }
}

fn render(v: &serde_json::Value) -> String {
    let empty = Vec::new();
    let list = |k: &str| v[k].as_array().unwrap_or(&empty).clone();
    let mut out = format!(
        "cluster {} · node {} · active calls {} · running pages {}\n",
        text(&v["cluster"]),
        text(&v["node"]),
        list("active_calls").len(),
        list("running_pages").len()
    );
    out.push_str("\nREGISTERED PHONES\nDEVICE\tLINES\tADDRESS\tNODE\tSINCE (UTC)\n");
    for p in list("registered_phones") {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            text(&p["device"]),
            text(&p["lines"]),
            text(&p["address"]),
            text(&p["node"]),
            when(&p["since"])
        ));
    }
    out.push_str(
        "\nACTIVE CALLS ON THIS NODE\nID\tSTATE\tCALLING\tDIALLED\tDEVICES\tSINCE (UTC)\n",
    );
    for c in list("active_calls") {
        let held = if c["held"] == true { " (held)" } else { "" };
        out.push_str(&format!(
            "{}\t{}{held}\t{}\t{}\t{}\t{}\n",
            text(&c["id"]),
            text(&c["state"]),
            text(&c["calling"]),
            text(&c["dialled"]),
            text(&c["devices"]),
            when(&c["started"])
        ));
    }
    out.push_str(
        "\nRUNNING PAGES ON THIS NODE\nDIALCAST\tCALLING\tGROUP\tMULTICAST\tSINCE (UTC)\n",
    );
    for p in list("running_pages") {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            text(&p["dialcast"]),
            text(&p["calling"]),
            text(&p["recipient_group"]),
            text(&p["multicast"]),
            when(&p["started"])
        ));
    }
    out.push_str(
        "\nEXTENSION MOBILITY LOGINS\nDEVICE\tUSER\tPROFILE\tSINCE (UTC)\tLOGOUT AT (UTC)\n",
    );
    for l in list("em_logins") {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            text(&l["device"]),
            text(&l["user"]),
            text(&l["profile"]),
            when(&l["since"]),
            when(&l["logout_at"])
        ));
    }
    out.push_str("\nLOCKED-OUT USERS\nUSER\tSECRET\tUNTIL (UTC)\n");
    for u in list("locked_out_users") {
        out.push_str(&format!(
            "{}\t{}\t{}\n",
            text(&u["user"]),
            text(&u["secret"]),
            when(&u["locked_until"])
        ));
    }
    out
}
