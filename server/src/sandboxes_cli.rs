//! `soulbox sandboxes ...` and `soulbox templates ...`.
//!
//! `sandboxes list` reads the registry in the server's database, so it answers while the
//! server is down (what ran, what is paused, what was lost). Every other command acts on what
//! a running server holds, through its API ([`crate::client`]), as the caller its API key
//! names: a tenant pauses, forks or deletes only its own.

use crate::cli::Cli;
use crate::client::{ApiClient, ServerArgs, segment};
use crate::config::Config;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum SandboxesCommand {
    /// List the recorded sandboxes, newest first (from the database; works while the server
    /// is down).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only those in this state.
        #[arg(long, value_enum)]
        state: Option<StateFilter>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pause a sandbox: checkpoint every context, release its memory, stop its container.
    Pause {
        /// The sandbox's id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Resume a paused sandbox now.
    Resume {
        /// The sandbox's id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Checkpoint a sandbox and keep it running: a server that stops from here on hands it
    /// back as it is now.
    Checkpoint {
        /// The sandbox's id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Fork a sandbox into new, independent ones; prints their ids, one per line.
    Fork {
        /// The sandbox's id.
        id: String,
        /// How many forks (1 to 100).
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Print the new sandboxes as JSON instead of their ids.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Kill a sandbox: its contexts, processes, workspace and checkpoints go.
    Kill {
        /// The sandbox's id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Save a sandbox (live or paused, left unchanged) as the next version of a template.
    Save {
        /// The sandbox to save.
        sandbox: String,
        /// The template's name (letters, digits, `-`, `_`).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the caller's templates (every version).
    List {
        /// The server's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Describe a template (its latest version, or `--version`).
    Show {
        /// The template's name.
        name: String,
        /// The version (default: the latest).
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a template: every version, or `--version`.
    Delete {
        /// The template's name.
        name: String,
        /// Only this version.
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// A sandbox state to filter by.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateFilter {
    /// Open, its contexts live.
    Running,
    /// Paused: its checkpoints hold it.
    Paused,
    /// Killed or expired.
    Killed,
    /// Left running by a server that died.
    Lost,
}

impl From<StateFilter> for soulbox_engine::sandbox::LedgerState {
    fn from(filter: StateFilter) -> Self {
        match filter {
            StateFilter::Running => Self::Running,
            StateFilter::Paused => Self::Paused,
            StateFilter::Killed => Self::Killed,
            StateFilter::Lost => Self::Lost,
        }
    }
}

pub async fn sandboxes(cli: &Cli, config: &Config, command: &SandboxesCommand) -> anyhow::Result<ExitCode> {
    match command {
        SandboxesCommand::List { tenant, state, json } => list(cli, config, tenant.as_deref(), *state, *json).await?,
        SandboxesCommand::Pause { id, server } => {
            let report: Value = ApiClient::new(server)?.post(&action(id, "pause"), &json!({})).await?;
            print_json(&report)?;
        }
        SandboxesCommand::Resume { id, server } => {
            let info: Value = ApiClient::new(server)?.post(&action(id, "resume"), &json!({})).await?;
            print_json(&info)?;
        }
        SandboxesCommand::Checkpoint { id, server } => {
            let report: Value = ApiClient::new(server)?.post(&action(id, "checkpoint"), &json!({})).await?;
            print_json(&report)?;
        }
        SandboxesCommand::Fork { id, count, json, server } => {
            let forks: Vec<Value> =
                ApiClient::new(server)?.post(&action(id, "fork"), &json!({ "count": count })).await?;
            for fork in &forks {
                match json {
                    true => println!("{}", serde_json::to_string(fork)?),
                    false => println!("{}", fork["id"].as_str().unwrap_or_default()),
                }
            }
        }
        SandboxesCommand::Kill { id, server } => {
            ApiClient::new(server)?.delete(&format!("/sandboxes/{}", segment(id))).await?;
            eprintln!("Killed {id}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn templates(command: &TemplatesCommand) -> anyhow::Result<ExitCode> {
    match command {
        TemplatesCommand::Save { sandbox, name, server } => {
            let body = json!({ "sandbox_id": sandbox, "name": name });
            let info: Value = ApiClient::new(server)?.post("/templates", &body).await?;
            print_json(&info)?;
        }
        TemplatesCommand::List { json, server } => {
            let templates: Vec<Value> = ApiClient::new(server)?.get("/templates").await?;
            if *json {
                return print_json(&Value::Array(templates)).map(|()| ExitCode::SUCCESS);
            }
            println!("{:<40} {:>7} {:<13} {:>12}  from sandbox", "name", "version", "base", "stored (KiB)");
            for template in templates {
                println!(
                    "{:<40} {:>7} {:<13} {:>12}  {}",
                    template["name"].as_str().unwrap_or_default(),
                    template["version"],
                    template["base"].as_str().unwrap_or_default(),
                    template["stored_bytes"].as_u64().unwrap_or_default() / 1024,
                    template["from_sandbox"].as_str().unwrap_or_default(),
                );
            }
        }
        TemplatesCommand::Show { name, version, server } => {
            let info: Value = ApiClient::new(server)?.get(&template_path(name, *version)).await?;
            print_json(&info)?;
        }
        TemplatesCommand::Delete { name, version, server } => {
            ApiClient::new(server)?.delete(&template_path(name, *version)).await?;
            match version {
                Some(version) => eprintln!("Deleted version {version} of {name}."),
                None => eprintln!("Deleted {name}."),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(
    cli: &Cli,
    config: &Config,
    tenant: Option<&str>,
    state: Option<StateFilter>,
    json: bool,
) -> anyhow::Result<()> {
    let db = cli.database(config).await?;
    let rows = db.sandboxes(tenant, state.map(Into::into)).await?;
    if json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
        return Ok(());
    }
    let now = crate::database::now_ms();
    println!(
        "{:<30} {:<20} {:<13} {:<8} {:>12} {:>11}  why",
        "id", "tenant", "template", "state", "changed (s)", "checkpoints"
    );
    for row in rows {
        let ago = (now - row.updated_ms).max(0) / 1000;
        let why = row.why.unwrap_or_default();
        println!(
            "{:<30} {:<20} {:<13} {:<8} {:>12} {:>11}  {why}",
            row.id,
            row.tenant,
            row.template,
            row.state,
            ago,
            row.checkpoints.len()
        );
    }
    Ok(())
}

/// `/sandboxes/{id}/{verb}`.
fn action(id: &str, verb: &str) -> String {
    format!("/sandboxes/{}/{verb}", segment(id))
}

fn template_path(name: &str, version: Option<u32>) -> String {
    let path = format!("/templates/{}", segment(name));
    match version {
        Some(version) => format!("{path}?version={version}"),
        None => path,
    }
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
