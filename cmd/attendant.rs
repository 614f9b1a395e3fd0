//! `ucm attendant check`: the seed's sizing rules for the Attendant Console against a cluster
//! definition and the expected or measured peaks.

use std::path::PathBuf;

use clap::Subcommand;
use ucm::config::LoadError;
use ucm::services::attendant::model::{Attendant, Peaks};
use ucm::services::attendant::sizing;

use crate::{print_out, Failure};

#[derive(Subcommand)]
pub enum Command {
    /// Check the attendant console server's sizing: CT gateway devices against the peak of
    /// incoming queue calls, service queues against the attendants (3 or 4 each) and the peak
    /// of transfers and holds, call park devices against the peak of parked calls. Peaks come
    /// from the flags (measured), else from `attendant.peaks`; a rule without one is
    /// reported as unchecked. Exit 0 when no rule is short, 1 when one is (or the definition
    /// is invalid), 2 when the file cannot be read.
    #[command(
        after_help = "Example:\n  ucm attendant check\n  ucm attendant check cluster.yaml --peak-incoming 2 --peak-parked 3 --json"
    )]
    Check {
        /// The cluster definition (YAML); without one, the demo cluster.
        file: Option<PathBuf>,
        /// Peak of incoming queue calls waiting at one time.
        #[arg(long, value_name = "N")]
        peak_incoming: Option<usize>,
        /// Peak of calls being transferred or held by all attendants at one time.
        #[arg(long, value_name = "N")]
        peak_transfers: Option<usize>,
        /// Peak of calls parked at one time.
        #[arg(long, value_name = "N")]
        peak_parked: Option<usize>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: Command) -> Result<(), Failure> {
    let Command::Check {
        file,
        peak_incoming,
        peak_transfers,
        peak_parked,
        json,
    } = cmd;
    let loaded = match &file {
        Some(f) => ucm::services::load_file(f),
        None => ucm::services::demo(),
    };
    let origin = file.as_ref().map_or_else(
        || "the demo cluster".to_string(),
        |f| f.display().to_string(),
    );
    let def = match loaded {
        Ok(d) => d,
        Err(LoadError::Invalid(errs)) => {
            let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            return Err(Failure::Check(format!(
                "the definition is not valid (see `ucm config check`):\n{}",
                text.join("\n")
            )));
        }
        Err(e) => return Err(Failure::Input(e.to_string())),
    };
    let a: Attendant = def.section();
    let given = Peaks {
        incoming_calls: peak_incoming,
        transfers_and_holds: peak_transfers,
        parked_calls: peak_parked,
    };
    let rules = sizing::check(&a, &given);
    let short = rules.iter().any(|r| r.verdict == "short");
    if json {
        let doc = serde_json::json!({
            "file": origin,
            "ok": !short,
            "rules": rules,
            "exit_code": if short { 1 } else { 0 },
        });
        print_out(&format!("{doc}\n"))?;
    } else {
        let mut text = String::new();
        for r in &rules {
            text.push_str(&format!("{:<10} {}: {}\n", r.verdict, r.rule, r.note));
        }
        print_out(&text)?;
    }
    if short {
        Err(Failure::Check(String::new()))
    } else {
        Ok(())
    }
}
