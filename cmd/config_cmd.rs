//! `ucm config check`: validate cluster definitions without touching a database.

use std::path::PathBuf;

use clap::Subcommand;
use ucm::config::LoadError;

use crate::{print_out, Failure};

#[derive(Subcommand)]
pub enum Command {
    /// Check definition files; every problem is printed as FILE:LINE:COLUMN: FIELD: MESSAGE
    /// (a YAML syntax error as such), all at once. Every file is checked even when one cannot
    /// be read. Exit 0 when all are valid, 1 when any is not, 2 when one cannot be read.
    Check {
        /// The cluster definition files (YAML) to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: Command) -> Result<(), Failure> {
    let Command::Check { files, json } = cmd;
    let mut report = Vec::new();
    let mut text = String::new();
    let mut failed = false;
    let mut unreadable = Vec::new();
    for f in &files {
        match ucm::services::load_file(f) {
            Ok(def) => {
                text.push_str(&format!(
                    "{}: ok (cluster {:?}: {} devices, {} end users)\n",
                    f.display(),
                    def.cluster.id,
                    def.devices.len(),
                    def.end_users.len()
                ));
                report.push(serde_json::json!({"file": f.display().to_string(), "valid": true, "errors": []}));
            }
            Err(LoadError::Invalid(errs)) => {
                failed = true;
                for e in &errs {
                    text.push_str(&format!("{e}\n"));
                }
                report.push(serde_json::json!({
                    "file": f.display().to_string(),
                    "valid": false,
                    "errors": errs.iter().map(|e| serde_json::json!({
                        "line": e.line, "column": e.column, "field": e.field, "message": e.message,
                    })).collect::<Vec<_>>(),
                }));
            }
            Err(e @ LoadError::Io { .. }) => {
                report.push(serde_json::json!({
                    "file": f.display().to_string(),
                    "valid": false,
                    "error": e.to_string(),
                    "errors": [],
                }));
                unreadable.push(e.to_string());
            }
        }
    }
    let exit_code = if !unreadable.is_empty() {
        2
    } else if failed {
        1
    } else {
        0
    };
    if json {
        let mut doc = serde_json::json!({
            "valid": exit_code == 0,
            "files": report,
            "exit_code": exit_code,
        });
        if !unreadable.is_empty() {
            doc["error"] = unreadable.join("; ").into();
        }
        print_out(&format!("{doc}\n"))?;
    } else {
        print_out(&text)?;
    }
    if !unreadable.is_empty() {
        // The report is printed; the unreadable files decide the exit code.
        return Err(Failure::Input(unreadable.join("\n")));
    }
    if failed {
        Err(Failure::Check(String::new()))
    } else {
        Ok(())
    }
}
