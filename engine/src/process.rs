//! Native processes and a headless browser: what a sandbox runs beyond its WebAssembly
//! contexts.
//!
//! A [`Machine`] is where a sandbox's processes run: the container backend's per-sandbox
//! container, which sees the sandbox's workspace at [`MACHINE_WORKSPACE`] (its working
//! directory). The sandbox layer asks a backend for one on the sandbox's first command
//! ([`crate::Backend::start_machine`]), keeps it for the sandbox's life and removes it when the
//! sandbox dies. A backend only starts processes and controls them ([`ProcessControl`]); the
//! sandbox layer keeps the registry on top (ids, output kept for late readers, exit status).
//!
//! Invariants: a started process sends its output and then exactly one [`ProcessEvent::Exit`],
//! the last event, whatever ends it (its own exit, a kill, its deadline, its machine dying).

use crate::backend::BackendError;
use crate::kernel::StopSignal;
use crate::result::Outcome;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a sandbox's workspace is inside its machine (also the processes' working directory).
/// WebAssembly contexts see the same files at `/`, and at this path too once the sandbox has a
/// machine (a `workspace` link in the workspace).
pub const MACHINE_WORKSPACE: &str = "/workspace";

/// How to start a machine for a sandbox.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    /// The sandbox's id (for labels and logs).
    pub sandbox_id: String,
    /// The sandbox's workspace on the host, mounted at [`MACHINE_WORKSPACE`].
    pub workspace: PathBuf,
    /// Environment variables every process sees.
    pub env: BTreeMap<String, String>,
    /// The policy processes reach the network under (`None`: no network; off unless the
    /// sandbox asked and the service allows it). The same as its contexts' HTTP follows.
    pub network: Option<crate::NetworkPolicy>,
    /// Raised when the sandbox is killed.
    pub stop: StopSignal,
}

/// A process to start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// A shell command line (run by `bash -c` in the machine). Default: empty, which with
    /// `pty` starts an interactive shell.
    #[serde(default)]
    pub command: String,
    /// Working directory (default: the workspace).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Environment variables, over the sandbox's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Wall-clock time after which the process (and its children) are killed. `None`: until
    /// it ends, is killed, or the sandbox dies.
    #[serde(default, rename = "timeout_ms", with = "crate::sandbox::optional_millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub deadline: Option<Duration>,
    /// Run on a pseudo-terminal of this size (an interactive shell by default).
    #[serde(default)]
    pub pty: Option<PtySize>,
}

/// A terminal's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PtySize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// Something a process did, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProcessEvent {
    /// Standard output (a terminal's output, for a PTY), as text (invalid UTF-8 replaced; a
    /// character is never split across events).
    Stdout {
        /// The text.
        text: String,
    },
    /// Standard error.
    Stderr {
        /// The text.
        text: String,
    },
    /// The process ended; always the last event.
    Exit(ProcessExit),
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessExit {
    /// Its exit status (`None` when it never started or its machine died).
    pub exit_code: Option<i32>,
    /// `completed` (ended by itself, any status), `killed`, `deadline_exceeded`,
    /// `memory_exceeded`, `output_limit_exceeded`, or `crashed` (the machine died).
    pub outcome: Outcome,
    /// For an outcome other than `completed`, what stopped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Wall time from start to exit.
    #[serde(rename = "duration_us", with = "crate::result::micros")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub duration: Duration,
}

/// Where a process's events go.
pub type ProcessSender = tokio::sync::mpsc::UnboundedSender<ProcessEvent>;

/// A started process, as its backend controls it.
#[async_trait]
pub trait ProcessControl: Send + Sync + std::fmt::Debug {
    /// Writes to its standard input.
    async fn write_stdin(&self, data: Vec<u8>) -> Result<(), BackendError>;
    /// Closes its standard input (it reads end of file).
    async fn close_stdin(&self) -> Result<(), BackendError>;
    /// Kills it and everything it started.
    async fn kill(&self) -> Result<(), BackendError>;
    /// Resizes its terminal (PTY processes only).
    async fn resize(&self, size: PtySize) -> Result<(), BackendError>;
}

/// A sandbox's machine: where its processes run.
#[async_trait]
pub trait Machine: Send + Sync + std::fmt::Debug {
    /// Starts a process; its output and then its exit go to `events`.
    async fn start(&self, spec: ProcessSpec, events: ProcessSender) -> Result<Arc<dyn ProcessControl>, BackendError>;

    /// Renders a page with the machine's headless browser (files in the workspace included).
    async fn render(&self, request: RenderRequest) -> Result<RenderedPage, BackendError>;

    /// Removes the machine: every process dies.
    async fn shutdown(&self);
}

/// What to render in the headless browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// The page: a URL (`https://...`; `file://...` inside the machine), a workspace path
    /// (`/report.html`), or HTML given inline.
    pub source: PageSource,
    /// Viewport width in pixels (the PNG's width). Default 1280.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Viewport height in pixels (the PNG's height). Default 800.
    #[serde(default = "default_height")]
    pub height: u32,
    /// Also print the page to PDF. Default false.
    #[serde(default)]
    pub pdf: bool,
}

/// Where a page comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PageSource {
    /// A URL the browser loads (needs network access unless it is a `file://` URL).
    Url(String),
    /// A file in the sandbox's workspace (sandboxes only).
    Path(String),
    /// The page's HTML.
    Html(String),
}

fn default_width() -> u32 {
    1280
}

fn default_height() -> u32 {
    800
}

/// The most pixels a rendered side may have.
pub const MAX_RENDER_SIDE: u32 = 8192;

impl RenderRequest {
    /// Checks the size.
    pub fn validate(&self) -> Result<(), String> {
        for (name, side) in [("width", self.width), ("height", self.height)] {
            if !(16..=MAX_RENDER_SIDE).contains(&side) {
                return Err(format!("`{name}` must be between 16 and {MAX_RENDER_SIDE} pixels"));
            }
        }
        Ok(())
    }
}

/// A rendered page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenderedPage {
    /// A screenshot of the viewport, PNG (base64 in JSON).
    #[serde(with = "crate::result::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub png: Vec<u8>,
    /// The page printed to PDF, when asked for (base64 in JSON).
    #[serde(default, with = "optional_base64", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Byte))]
    pub pdf: Option<Vec<u8>>,
    /// The page's title.
    pub title: String,
    /// The page's visible text (after its scripts ran).
    pub text: String,
    /// The page's links, as absolute URLs where the page's address allows.
    pub links: Vec<Link>,
}

/// A link on a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Link {
    /// Its `href`.
    pub href: String,
    /// Its text.
    pub text: String,
}

mod optional_base64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => crate::result::base64_bytes::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "crate::result::base64_bytes")] Vec<u8>);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}
