//! Stateful contexts (kernels): what a backend implements so a sandbox can keep state.
//!
//! A [`Kernel`] is one live interpreter (a Python or JavaScript context) whose variables,
//! imports and functions survive from one cell to the next. Backends start kernels through
//! [`crate::Backend::start_kernel`]; the sandbox layer ([`crate::sandbox`]) owns them, runs one
//! cell at a time on each, and turns the [`ExecutionEvent`]s a kernel emits into a stream and a
//! summary ([`Execution`]).
//!
//! Invariant: a kernel reports guest behaviour (an exception, a tripped limit) as events and a
//! [`CellReport`], never as an `Err`; `Err` means the backend itself failed. When a limit stops
//! a cell in a way the interpreter cannot recover from (a wasm trap leaves its state
//! undefined), the kernel replaces itself with a fresh one from the same template and says so
//! in [`CellReport::restarted`].

use crate::backend::BackendError;
use crate::language::Language;
use crate::limits::Limits;
use crate::result::Outcome;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A sandbox's starting point: which context it opens with and what is already imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Template {
    /// A plain Python context (from the plain snapshot: a cell that imports the scientific
    /// stack loads it then, once per context).
    #[default]
    Python,
    /// A Python context with `numpy as np`, `pandas as pd` and `matplotlib.pyplot as plt`
    /// already imported into `__main__`.
    DataScience,
    /// A plain JavaScript context.
    #[serde(rename = "javascript", alias = "js")]
    JavaScript,
}

impl Template {
    /// Every template, in a stable order.
    pub const ALL: [Template; 3] = [Template::Python, Template::DataScience, Template::JavaScript];

    /// The stable name (`python`, `data-science`, `javascript`).
    pub fn name(self) -> &'static str {
        match self {
            Template::Python => "python",
            Template::DataScience => "data-science",
            Template::JavaScript => "javascript",
        }
    }

    /// The language of the template's default context.
    pub fn language(self) -> Language {
        match self {
            Template::Python | Template::DataScience => Language::Python,
            Template::JavaScript => Language::JavaScript,
        }
    }

    /// What a new context in `language` preloads in a sandbox started from this template.
    pub fn preload_for(self, language: Language) -> Preload {
        match (self, language) {
            (Template::DataScience, Language::Python) => Preload::DataScience,
            _ => Preload::Nothing,
        }
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Template {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "python" | "plain" | "base" => Ok(Template::Python),
            "data-science" | "datascience" | "data_science" => Ok(Template::DataScience),
            "javascript" | "js" => Ok(Template::JavaScript),
            _ => Err(format!(
                "unknown template `{s}`; expected one of: {}",
                Template::ALL.map(Template::name).join(", ")
            )),
        }
    }
}

/// What a new context imports into its global namespace before its first cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Preload {
    /// Nothing.
    #[default]
    Nothing,
    /// Python: `numpy as np`, `pandas as pd`, `matplotlib.pyplot as plt`.
    DataScience,
}

/// How to start a kernel.
#[derive(Debug, Clone)]
pub struct KernelSpec {
    /// Its language.
    pub language: Language,
    /// What it imports before its first cell.
    pub preload: Preload,
    /// The sandbox's workspace on the host, which the guest sees as `/` (shared by every
    /// context of the sandbox).
    pub workspace: PathBuf,
    /// Environment variables the guest sees (over the interpreter's base environment).
    pub env: BTreeMap<String, String>,
    /// Raised when the sandbox is killed: a running cell stops at once and the kernel is not
    /// restarted.
    pub stop: StopSignal,
    /// The sandbox's owner, whose share of the worker pool its cells use.
    pub owner: Option<String>,
    /// The outbound HTTP its cells may make ([`crate::NetworkPolicy`], validated); `None`:
    /// none. Each cell gets the policy's request budget afresh.
    pub network: Option<crate::NetworkPolicy>,
    /// Python packages its Python contexts import (pip requirements, validated), installed in
    /// the workspace when a context starts. Empty: none.
    pub packages: Vec<String>,
}

/// A one-way signal that a sandbox is gone. Cheap to clone; clones share the signal.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    shared: Arc<(AtomicBool, tokio::sync::Notify)>,
}

impl StopSignal {
    /// Raises the signal (idempotent).
    pub fn stop(&self) {
        self.shared.0.store(true, Ordering::SeqCst);
        self.shared.1.notify_waiters();
    }

    /// Whether the signal was raised.
    pub fn is_stopped(&self) -> bool {
        self.shared.0.load(Ordering::SeqCst)
    }

    /// Resolves once the signal is raised.
    pub async fn stopped(&self) {
        let notified = self.shared.1.notified();
        if self.is_stopped() {
            return;
        }
        notified.await;
    }
}

/// One cell to run.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The code.
    pub code: String,
    /// Deadline, fuel, memory and output caps for this cell.
    pub limits: Limits,
}

/// Bytes of rich results (results and errors, as the guest sends them) one cell may produce:
/// the host keeps them until the cell's caller has them, so a guest may not make it hold more.
/// Past it the cell is stopped with [`Outcome::OutputLimitExceeded`].
pub const MAX_RESULT_BYTES_PER_CELL: usize = 32 << 20;
/// Rich results one cell may produce, likewise.
pub const MAX_RESULTS_PER_CELL: usize = 1024;

/// Where a kernel sends a cell's events as they happen (bounded, with backpressure: see
/// [`crate::events`]).
pub use crate::events::EventSender;

/// How a cell ended, besides the events it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellReport {
    /// `Completed` when the code ran to its end (an exception is an [`ExecutionEvent::Error`],
    /// not an outcome); otherwise the limit that stopped it.
    pub outcome: Outcome,
    /// For an outcome other than `Completed`, what stopped it.
    pub message: Option<String>,
    /// The kernel was replaced by a fresh one: the context's state is lost.
    pub restarted: bool,
    /// Fuel consumed, when the cell set a fuel budget.
    pub fuel_used: Option<u64>,
    /// The largest the context's linear memory has grown to, in bytes.
    pub peak_memory_bytes: u64,
    /// What the cell's HTTP used, in a context with a network policy.
    pub network: Option<crate::NetworkUsage>,
}

/// A live, stateful interpreter. Owned by one context; never runs two cells at once.
#[async_trait]
pub trait Kernel: Send + std::fmt::Debug {
    /// Its language.
    fn language(&self) -> Language;

    /// Runs `cell`, sending stdout, stderr, results and errors to `events` as they happen.
    async fn run(&mut self, cell: Cell, events: EventSender) -> Result<CellReport, BackendError>;

    /// Captures the whole state of the context, between cells, as an image its backend's
    /// [`Backend::restore_kernel`](crate::Backend::restore_kernel) rebuilds exactly. Kernels
    /// without checkpoints keep the default, which refuses.
    async fn checkpoint(&mut self) -> Result<KernelImage, BackendError> {
        Err(BackendError::NotCheckpointable(format!(
            "{} contexts of this backend have no checkpoints",
            self.language()
        )))
    }

    /// Gives a kernel just restored from a checkpoint fresh entropy: its language's global
    /// random generators are reseeded (Python's `random` and `numpy.random`'s global state,
    /// JavaScript's `Math.random`), so copies of one checkpoint (forks) draw different numbers
    /// from them, even where the code had seeded them itself. Generators the code made (a
    /// `random.Random()`, a `numpy` `default_rng()`) keep their state, seeded or not: forks
    /// draw the same numbers from those. Kernels without checkpoints keep the default, which
    /// refuses.
    async fn diverge(&mut self) -> Result<(), BackendError> {
        Err(BackendError::NotCheckpointable(format!("{} contexts of this backend cannot be forked", self.language())))
    }
}

/// A context's state, captured by [`Kernel::checkpoint`]: opaque bytes only the backend that
/// made them reads (it checks them before use), tagged with the context's language.
///
/// The bytes come in parts. The engine stores each part by its content, once: a backend that
/// cuts its state the same way every time (a kernel's memory by fixed range, say) makes a
/// checkpoint after a cell cost only the parts the cell changed.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KernelImage {
    /// The context's language.
    pub language: Language,
    /// The backend's encoding of the state, in parts (at least one), shared: a backend that
    /// keeps its parts hands out copies for the cost of a reference count.
    pub parts: Vec<Arc<[u8]>>,
    /// How many leading parts are, byte for byte, the leading parts of the previous image
    /// this same kernel returned (0, the default, when not known): the engine reuses what it
    /// stored for them without reading them again.
    pub kept: usize,
    /// Whether the engine restores this very image into several kernels (a fork of many):
    /// a backend may then back them all with one copy of its state rather than one each.
    /// False by default.
    pub shared: bool,
}

impl KernelImage {
    /// An image of a `language` context, as its backend encoded it, in one part.
    pub fn new(language: Language, bytes: Vec<u8>) -> Self {
        KernelImage { language, parts: vec![Arc::from(bytes)], kept: 0, shared: false }
    }

    /// An image of a `language` context in `parts`, which
    /// [`Backend::restore_kernel`](crate::Backend::restore_kernel) gets back in the same order.
    pub fn from_parts(language: Language, parts: Vec<Arc<[u8]>>) -> Self {
        KernelImage { language, parts, kept: 0, shared: false }
    }

    /// The same image, saying its first `kept` parts are those of the previous image this
    /// kernel returned ([`KernelImage::kept`]).
    pub fn with_kept(self, kept: usize) -> Self {
        KernelImage { kept: kept.min(self.parts.len()), ..self }
    }

    /// The same image, to be restored into several kernels ([`KernelImage::shared`]).
    pub fn into_shared(self) -> Self {
        KernelImage { shared: true, ..self }
    }

    /// Its size in bytes, all parts together.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|part| part.len()).sum()
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for KernelImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelImage")
            .field("language", &self.language)
            .field("parts", &self.parts.len())
            .field("bytes", &self.len())
            .finish()
    }
}

/// Something a running cell produced, in the order it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExecutionEvent {
    /// Text the code wrote to stdout.
    Stdout {
        /// The text (invalid UTF-8 replaced).
        text: String,
    },
    /// Text the code wrote to stderr.
    Stderr {
        /// The text.
        text: String,
    },
    /// A rich result: the cell's final expression, a figure shown or left open, a displayed
    /// object.
    Result(RichResult),
    /// The cell raised an exception (the context stays usable).
    Error(CellError),
    /// The cell ended; always the last event of an execution.
    End(ExecutionEnd),
}

/// A rich result, shaped like a notebook output (and E2B's `Result`): one object in several
/// formats; every field but `is_main_result` is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RichResult {
    /// True for the value of the cell's final expression.
    #[serde(default)]
    pub is_main_result: bool,
    /// Plain-text representation (`repr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// HTML (a DataFrame's table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Markdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markdown: Option<String>,
    /// SVG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svg: Option<String>,
    /// PNG image, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub png: Option<String>,
    /// LaTeX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latex: Option<String>,
    /// JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// Tabular data (a DataFrame as `{"columns", "index", "data"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// What a chart shows, so an agent can read it without looking at it: `{"type": "line" |
    /// "scatter" | "bar" | "pie" | "box_and_whisker" | "superchart", "title", "elements", ...}`
    /// as E2B's chart results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<serde_json::Value>,
}

/// An exception a cell raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CellError {
    /// The exception's type name (`ZeroDivisionError`, `TypeError`).
    pub name: String,
    /// Its message.
    pub value: String,
    /// The formatted traceback (Python) or stack (JavaScript).
    pub traceback: String,
}

/// The end of an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct ExecutionEnd {
    /// The language of the context that ran the cell.
    pub language: Language,
    /// `Completed`, or the limit that stopped the cell.
    pub outcome: Outcome,
    /// For an outcome other than `Completed`, what stopped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The context was restarted because of this cell: its variables are gone.
    pub context_restarted: bool,
    /// The context's count of executions, this one included.
    pub execution_count: u64,
    /// Wall time of the execution, queueing for the context included.
    #[serde(rename = "duration_us", with = "crate::result::micros")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub duration: Duration,
    /// Fuel consumed, when the cell set a fuel budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// The largest the context's linear memory has grown to, in bytes.
    pub peak_memory_bytes: u64,
    /// What the cell's HTTP used, in a context with a network policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::NetworkUsage>,
}

/// A finished execution: every event folded into one value, for callers that do not stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Execution {
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// Rich results in the order they were produced (the main result among them).
    pub results: Vec<RichResult>,
    /// The exception the cell raised, if any.
    pub error: Option<CellError>,
    /// How it ended.
    #[serde(flatten)]
    pub end: ExecutionEnd,
}

impl Execution {
    /// Folds `events` (ending with [`ExecutionEvent::End`]) into an execution. Returns `None`
    /// when the end is missing.
    pub fn from_events(events: impl IntoIterator<Item = ExecutionEvent>) -> Option<Self> {
        let (mut stdout, mut stderr, mut results, mut error) = (String::new(), String::new(), Vec::new(), None);
        for event in events {
            match event {
                ExecutionEvent::Stdout { text } => stdout.push_str(&text),
                ExecutionEvent::Stderr { text } => stderr.push_str(&text),
                ExecutionEvent::Result(result) => results.push(result),
                ExecutionEvent::Error(e) => error = Some(e),
                ExecutionEvent::End(end) => return Some(Execution { stdout, stderr, results, error, end }),
            }
        }
        None
    }

    /// How it ended.
    pub fn outcome(&self) -> Outcome {
        self.end.outcome
    }

    /// The value of the cell's final expression, if it had one.
    pub fn main_result(&self) -> Option<&RichResult> {
        self.results.iter().find(|r| r.is_main_result)
    }

    /// The final expression's plain text, if any.
    pub fn text(&self) -> Option<&str> {
        self.main_result().and_then(|r| r.text.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_by_name() {
        for template in Template::ALL {
            assert_eq!(template.name().parse::<Template>().unwrap(), template);
            let json = serde_json::Value::String(template.name().into());
            assert_eq!(
                serde_json::from_value::<Template>(json.clone()).unwrap(),
                template,
                "the wire name is the name"
            );
            assert_eq!(serde_json::to_value(template).unwrap(), json);
        }
        assert!("gpu".parse::<Template>().unwrap_err().contains("data-science"));
    }

    #[test]
    fn events_fold_into_an_execution() {
        let end = ExecutionEnd {
            language: Language::Python,
            outcome: Outcome::Completed,
            message: None,
            context_restarted: false,
            execution_count: 1,
            duration: Duration::from_millis(1),
            fuel_used: None,
            peak_memory_bytes: 0,
            network: None,
        };
        let events = vec![
            ExecutionEvent::Stdout { text: "a".into() },
            ExecutionEvent::Result(RichResult { is_main_result: true, text: Some("2".into()), ..Default::default() }),
            ExecutionEvent::Stdout { text: "b".into() },
            ExecutionEvent::End(end),
        ];
        let execution = Execution::from_events(events).unwrap();
        assert_eq!(execution.stdout, "ab");
        assert_eq!(execution.text(), Some("2"));
        let json = serde_json::to_value(ExecutionEvent::Stdout { text: "x".into() }).unwrap();
        assert_eq!(json, serde_json::json!({"type": "stdout", "text": "x"}));
    }
}
