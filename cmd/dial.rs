//! `ucm dial`: click-to-call from scripts over the WebDialer SOAP interface (so it works
//! against Cisco Unified CM too). Exit codes: 0 success, 1 WebDialer refused (its response
//! code and meaning are printed), 2 usage, input or an unreachable service.

use clap::Args as ClapArgs;
use ucm::client::webdialer::{find_home, HomeError, WdCallError, WdClient};
use ucm::services::webdialer::code_meaning;
use ucm::wire::soap::{Credential, Request, UserProfile};

use crate::client_args::ServerArgs;
use crate::{print_out, Failure};

#[derive(ClapArgs)]
#[command(after_help = "Examples:\n  \
    echo \"$PW\" | ucm dial 10002 --user jsmith --password-stdin\n  \
    UCM_PASSWORD=... ucm dial 10002 --user jsmith --device SEP00036BC7B973 --line 10001\n  \
    ucm dial --end --user jsmith --device SEP00036BC7B973\n  \
    ucm dial --profile --user jsmith\n\
Exit codes: 0 success, 1 WebDialer refused (response code 1-9), 2 usage or unreachable.")]
#[command(mut_arg("server", |a| a.help(
    "The WebDialer: a base URL (the standard path is added) or the full service URL"
)))]
#[command(mut_arg("timeout", |a| a.default_value("70").help(
    "Seconds to wait for the answer (a makeCall waits for the user's phone to answer)"
)))]
pub struct Args {
    /// The number to call.
    #[arg(required_unless_present_any = ["end", "profile"], conflicts_with_all = ["end", "profile"])]
    destination: Option<String>,
    /// The user whose phone places the call (and whose password is given).
    #[arg(long)]
    user: String,
    /// Read --user's password from the first line of stdin (otherwise the environment variable
    /// UCM_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
    /// The phone to call from [default: the user's first associated device].
    #[arg(long, value_name = "SEP<MAC>", conflicts_with = "em")]
    device: Option<String>,
    /// The line (directory number) on the device [default: the primary extension].
    #[arg(long, value_name = "DN", requires = "device")]
    line: Option<String>,
    /// Call from the phone the user is logged in on with Extension Mobility.
    #[arg(long)]
    em: bool,
    /// End the call WebDialer placed from the device instead of dialling.
    #[arg(long, conflicts_with = "profile")]
    end: bool,
    /// List the user's devices and lines (getProfileSoap).
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    srv: ServerArgs,
    /// Find the user's home WebDialer through this Redirector first (base URL or full URL).
    #[arg(long, value_name = "URL")]
    redirector: Option<String>,
}

fn password(a: &Args) -> Result<String, Failure> {
    crate::password(
        a.password_stdin,
        crate::PASSWORD_ENV,
        "UCM_DIAL_PASSWORD",
        "password for --user",
    )
}

pub async fn run(a: Args) -> Result<(), Failure> {
    let cred = Credential {
        user_id: a.user.clone(),
        password: password(&a)?,
        token: None,
    };
    let opts = a.srv.client.options();
    let server = match &a.redirector {
        Some(r) => find_home(r, &cred, a.destination.as_deref(), &opts)
            .await
            .map_err(|e| match e {
                HomeError::Refused(m) => Failure::Check(format!("ucm: {m}")),
                HomeError::Transport(m) => Failure::Input(m),
            })?,
        None => a.srv.server.clone(),
    };
    let client = WdClient::new(&server, &opts).map_err(|e| Failure::Input(e.to_string()))?;
    let profile = UserProfile {
        user: a.user.clone(),
        device_name: a.device.clone().unwrap_or_default(),
        line_number: a.line.clone().unwrap_or_default(),
        support_em: a.em,
    };
    let req = if a.profile {
        Request::GetProfile {
            cred,
            user: a.user.clone(),
        }
    } else if a.end {
        Request::EndCall { cred, profile }
    } else {
        Request::MakeCall {
            cred,
            destination: a.destination.clone().unwrap_or_default(),
            profile,
        }
    };
    let op = req.operation();
    // A makeCall answers when the user's phone does (up to --timeout): on a terminal, say what
    // is awaited and for how long so far.
    let progress = matches!(req, Request::MakeCall { .. })
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let call = client.call(&req);
    let reply = if progress {
        let reply = with_progress(call, a.srv.client.timeout).await;
        eprint!("\r\x1b[K");
        reply
    } else {
        call.await
    };
    let reply = reply.map_err(|e| match e {
        WdCallError::Fault(f) => Failure::Input(format!("{}: SOAP fault: {f}", client.url())),
        WdCallError::Transport(m) => Failure::Input(m),
    })?;
    let Some(code) = reply.response_code else {
        return Err(Failure::Input(format!(
            "{}: the {op} response has no responseCode",
            client.url()
        )));
    };
    if a.srv.client.json {
        let devices: Vec<serde_json::Value> = reply
            .devices
            .iter()
            .map(|(d, l)| serde_json::json!({"device": d, "lines": l}))
            .collect();
        let mut doc = serde_json::json!({
            "operation": op,
            "response_code": code,
            "meaning": code_meaning(code),
            "description": reply.description,
        });
        if a.profile {
            doc["devices"] = serde_json::Value::Array(devices);
        }
        print_out(&format!("{doc}\n"))?;
    } else if code == 0 {
        let what = if a.profile {
            let mut s = String::new();
            for (d, lines) in &reply.devices {
                s.push_str(&format!("{d}\n"));
                for l in lines {
                    s.push_str(&format!("  {l}\n"));
                }
            }
            s
        } else if a.end {
            "call ended\n".to_string()
        } else {
            // makeCall succeeds when the user's phone answered and the call to the
            // destination was placed; WebDialer says nothing of the destination after that.
            let dest = a.destination.as_deref().unwrap_or_default();
            format!(
                "calling {dest}: your phone answered and the call to {dest} was placed \
                 (WebDialer does not report whether it rings or is answered)\n"
            )
        };
        print_out(&what)?;
    }
    if code == 0 {
        Ok(())
    } else if a.srv.client.json {
        Err(Failure::Check(String::new()))
    } else {
        Err(Failure::Check(format!(
            "ucm: WebDialer {op} refused with code {code} ({}): {}",
            code_meaning(code),
            reply.description
        )))
    }
}

/// Awaits `call`, printing on stderr each second how long the user's phone has been awaited.
async fn with_progress<T>(call: impl std::future::Future<Output = T>, limit: u64) -> T {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tokio::pin!(call);
    let mut waited = 0u64;
    loop {
        tokio::select! {
            r = &mut call => return r,
            _ = tick.tick() => {
                eprint!(
                    "\rwaiting for your phone to answer (pick it up, or it rings out): {waited} s of up to {limit} s"
                );
                waited += 1;
            }
        }
    }
}
