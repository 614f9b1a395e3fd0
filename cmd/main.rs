//! The `ucm` command: a thin clap layer over the library. Exit codes: 0 ok or all checks
//! passed, 1 a check failed, 2 usage, input or I/O error.

mod assistant;
mod attendant;
mod client_args;
mod cluster;
mod config_cmd;
mod console;
mod db;
mod dial;
mod em;
mod emcc;
mod page;
mod pcap;
mod phone;
mod serve;
mod services;
mod status;
mod user;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "ucm",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("UCM_COMMIT"), ")"),
    about = "Runs and checks the Cisco Unified CM application layer: IP Phone Services, \
             Extension Mobility, WebDialer, Paging and the SIP call control under them",
    after_help = "Exit codes: 0 ok or all checks passed, 1 a check failed, 2 usage, input or I/O error."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of a cluster (the demo cluster on SQLite when given no --config).
    Serve(serve::Args),
    /// A cluster of nodes on one database: which nodes are up, what each holds.
    #[command(subcommand)]
    Cluster(cluster::Command),
    /// Import, export and inspect the cluster database.
    #[command(subcommand)]
    Db(db::Command),
    /// Check cluster definition files.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Simulated Cisco IP phones for labs and tests.
    #[command(subcommand)]
    Phone(phone::Command),
    /// Extension Mobility over the EM service API (works against Cisco Unified CM too).
    #[command(subcommand)]
    Em(em::Command),
    /// Extension Mobility Cross Cluster: exchange certificates between clusters.
    #[command(subcommand)]
    Emcc(emcc::Command),
    /// Check packet captures: DSCP audit per flow against a QoS policy.
    #[command(subcommand)]
    Pcap(pcap::Command),
    /// WebDialer click-to-call over the SOAP interface (works against Cisco Unified CM too).
    Dial(dial::Args),
    /// IP Phone Services: push objects to phones, lint services for a phone model.
    #[command(subcommand)]
    Services(services::Command),
    /// Page a recipient group through the Paging Server, as a caller; list page reports.
    Page(page::Args),
    /// Unified CM Assistant: the Assistant Console client (TCP 2912).
    #[command(subcommand)]
    Assistant(assistant::Command),
    /// An attendant console (Attendant Console): queues and events, commands on stdin.
    Console(console::Args),
    /// The Attendant Console server: its sizing rules.
    #[command(subcommand)]
    Attendant(attendant::Command),
    /// The live cluster: registered phones, active calls, EM logins, running pages, locked-out
    /// users (for an application user).
    Status(status::Args),
    /// Print a shell completion script (e.g. `ucm completions bash > /etc/bash_completion.d/ucm`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `ucm man | man -l -`; with --out-dir, write ucm.1
    /// and a page per subcommand (ucm-serve.1, ucm-em-login.1, ...) there.
    Man {
        /// Write the pages into this directory instead of printing the main page.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Users: end a lockout (`ucm user unlock USER --db URL`).
    #[command(subcommand)]
    User(user::Command),
}

/// An error that decides the exit code.
pub enum Failure {
    /// A check failed: exit 1.
    Check(String),
    /// Usage, input or I/O error: exit 2.
    Input(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Input(e.to_string())
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UCM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal who did not ask for none (no-color.org).
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Whether the command line asks for JSON (`--json` before any `--`): errors then come as one
/// JSON object on stdout too, so a script reading stdout always gets a document.
fn wants_json() -> bool {
    // The program name stays in as the first window's left side.
    std::env::args_os()
        .take_while(|a| a != "--")
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| {
            w[1] == "--json" || w[1] == "--format=json" || (w[0] == "--format" && w[1] == "json")
        })
}

/// On an error under `--json`, the object a script reads when the command printed nothing:
/// `{"error": "...", "exit_code": N}` (stdout; the message also goes to stderr).
fn json_error(message: &str, code: u8) {
    if wants_json() && !PRINTED.load(std::sync::atomic::Ordering::Relaxed) {
        let doc = serde_json::json!({"error": message, "exit_code": code});
        let _ = print_out(&format!("{doc}\n"));
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => {
                    let text = e.render().to_string();
                    let first = text.lines().next().unwrap_or("usage error");
                    json_error(first.trim_start_matches("error: "), 2);
                    ExitCode::from(2)
                }
            };
        }
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ucm: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(a) => serve::run(a).await,
            Command::Db(c) => db::run(c).await,
            Command::Cluster(c) => cluster::run(c).await,
            Command::Config(c) => config_cmd::run(c).await,
            Command::Phone(c) => phone::run(c).await,
            Command::Em(c) => em::run(c).await,
            Command::Pcap(c) => pcap::run(c).await,
            Command::Dial(a) => dial::run(a).await,
            Command::Services(c) => services::run(c).await,
            Command::Page(a) => page::run(a).await,
            Command::Assistant(c) => assistant::run(c).await,
            Command::Console(a) => console::run(a).await,
            Command::Attendant(c) => attendant::run(c).await,
            Command::Status(a) => status::run(a).await,
            Command::Emcc(c) => emcc::run(c).await,
            Command::Completions { shell } => {
                let mut out = Vec::new();
                clap_complete::generate(
                    shell,
                    &mut <Cli as clap::CommandFactory>::command(),
                    "ucm",
                    &mut out,
                );
                print_out(&String::from_utf8_lossy(&out))
            }
            Command::Man { out_dir: None } => {
                let mut out = Vec::new();
                clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                    .render(&mut out)
                    .map_err(|e| Failure::Input(format!("rendering the manual page: {e}")))?;
                print_out(&String::from_utf8_lossy(&out))
            }
            Command::Man { out_dir: Some(dir) } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                cmd.build();
                write_man_pages(&cmd, "ucm", &dir)
            }
            Command::User(c) => user::run(c).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Check(msg)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            json_error(if msg.is_empty() { "check failed" } else { &msg }, 1);
            ExitCode::from(1)
        }
        Err(Failure::Input(msg)) => {
            // Empty: the error was already shown where the user looks.
            if !msg.is_empty() {
                eprintln!("ucm: {msg}");
            }
            json_error(&msg, 2);
            ExitCode::from(2)
        }
    }
}

/// Writes `name.1` for `cmd` and, recursively, `name-sub.1` for each of its subcommands.
fn write_man_pages(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> Result<(), Failure> {
    let page = cmd.clone().name(name.to_string());
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(|e| Failure::Input(format!("rendering the manual page {name}: {e}")))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out)
        .map_err(|e| Failure::Input(format!("writing {}: {e}", path.display())))?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

/// Whether anything was written to stdout (a report printed before the failure is the document).
static PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes that a command wrote its report to stdout itself (streamed): it is the document.
pub fn mark_printed() {
    PRINTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Writes to stdout, treating a closed pipe (`ucm ... | head`) as success.
pub fn print_out(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    PRINTED.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Failure::Input(format!("writing to stdout: {e}"))),
    }
}

/// Where every command reads `--user`'s password when not given `--password-stdin`.
pub const PASSWORD_ENV: &str = "UCM_PASSWORD";
/// Where every command reads an application user's password when not given
/// `--app-password-stdin`.
pub const APP_PASSWORD_ENV: &str = "UCM_APP_PASSWORD";

/// A password: the first line of stdin when `from_stdin`, else the environment variable `var`
/// (one of [`PASSWORD_ENV`], [`APP_PASSWORD_ENV`]; the names earlier releases read, `legacy`,
/// still work with a warning). Never a flag: `ps` shows flags.
pub fn password(from_stdin: bool, var: &str, legacy: &str, what: &str) -> Result<String, Failure> {
    if from_stdin {
        return read_stdin_line(what);
    }
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    if let Ok(v) = std::env::var(legacy) {
        tracing::warn!("{legacy} is read for compatibility; the name is {var}");
        return Ok(v);
    }
    let flag = if var == APP_PASSWORD_ENV {
        "--app-password-stdin"
    } else {
        "--password-stdin"
    };
    Err(Failure::Input(format!(
        "no {what}: give {flag} or set {var} (never a flag)"
    )))
}

/// The first line of stdin without its line ending (a password: never from a flag, which `ps`
/// shows). An empty line is an input error.
pub fn read_stdin_line(what: &str) -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::Input(format!("reading {what} from stdin: {e}")))?;
    let text = line.trim_end_matches(['\r', '\n']).to_string();
    if text.is_empty() {
        return Err(Failure::Input(format!("no {what} on stdin")));
    }
    Ok(text)
}

/// Installs SIGINT and SIGTERM handlers now; the returned future completes on either.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Failure::Input(format!("installing the SIGTERM handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Failure::Input(format!("installing the SIGINT handler: {e}")))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for in `--help`.
    #[test]
    fn r21_every_flag_of_every_command_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for s in cmd.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut cmd = super::Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "ucm", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:#?}");
    }
}
