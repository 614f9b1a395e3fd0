//! `ucm db import|export`: move a cluster definition in and out of the database.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};
use ucm::config;
use ucm::store::{self, Store};

use crate::{print_out, Failure};

/// Where the database is: `--db URL`, else SQLite in the data directory.
#[derive(ClapArgs, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite:PATH, sqlite::memory: or postgres://user@host/db.
    #[arg(long, env = "UCM_DB")]
    pub db: Option<String>,
    /// Data directory (database, node certificate). Default: $XDG_DATA_HOME/ucm or ~/.local/share/ucm.
    #[arg(long, env = "UCM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DbArgs {
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("ucm");
        }
        match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".local/share/ucm"),
            None => PathBuf::from(".ucm"),
        }
    }

    pub fn url(&self) -> Result<String, Failure> {
        if let Some(u) = &self.db {
            return Ok(u.clone());
        }
        let dir = self.data_dir();
        store::private_dir(&dir)
            .map_err(|e| Failure::Input(format!("data directory {}: {e}", dir.display())))?;
        Ok(format!("sqlite:{}", dir.join("ucm.db").display()))
    }

    pub async fn open(&self) -> Result<Store, Failure> {
        let url = self.url()?;
        Ok(Store::open(&url).await?)
    }

    /// Opens the database to read it only: nothing is created (no data directory, no file).
    pub async fn open_existing(&self) -> Result<Store, Failure> {
        let url = match &self.db {
            Some(u) => u.clone(),
            None => format!("sqlite:{}", self.data_dir().join("ucm.db").display()),
        };
        Ok(Store::open_existing(&url).await?)
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Load a cluster definition (YAML) into the database, replacing the stored one.
    /// Runtime state (registrations, EM logins, timers) is kept.
    Import {
        /// The definition file.
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Write the stored cluster definition as YAML (secrets as argon2 hashes).
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

pub async fn run(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::Import { file, db, json } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::Input(format!("{}: {e}", file.display())))?;
            let origin = file.display().to_string();
            let mut def = ucm::services::parse_str(&text, &origin)?;
            config::hash_secrets(&mut def);
            let store = db.open().await?;
            let summary = store.import(&def, &store::digest(&text), &origin).await?;
            store.close().await;
            let msg = if json {
                serde_json::json!({
                    "imported": origin,
                    "cluster": def.cluster.id,
                    "objects": summary.objects,
                    "devices": def.devices.len(),
                    "end_users": def.end_users.len(),
                })
                .to_string()
                    + "\n"
            } else {
                format!(
                    "imported {origin}: cluster {:?}, {} objects ({} devices, {} end users)\n",
                    def.cluster.id,
                    summary.objects,
                    def.devices.len(),
                    def.end_users.len()
                )
            };
            print_out(&msg)
        }
        Command::Export { db, output } => {
            let store = db.open_existing().await?;
            let def = store.load().await?;
            store.close().await;
            let Some(mut def) = def else {
                return Err(Failure::Input(
                    "the database holds no cluster definition (run `ucm db import FILE` first)"
                        .into(),
                ));
            };
            // The services' sections in their own field order, as a definition is written.
            ucm::services::schema().attach(&mut def);
            let yaml = config::to_yaml(&def)?;
            match output {
                Some(p) => std::fs::write(&p, yaml)
                    .map_err(|e| Failure::Input(format!("{}: {e}", p.display()))),
                None => print_out(&yaml),
            }
        }
    }
}
