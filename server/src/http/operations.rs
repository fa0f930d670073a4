//! What a request does, whichever door it came in by: a REST route, an MCP tool or a
//! `/v1/tools` call.
//!
//! Work that runs on a task of its own (a command, a stream's pump, the rest of a cell whose
//! caller left: [`run_to_end`]) carries the request's span, so the engine's spans stay beneath
//! the request's in logs and traces.
//!
//! Every operation that runs guest work goes through here: it takes the caller's execution
//! slot, checks the tenant's daily budget, runs on the engine (the tenant is the owner of every
//! sandbox and execution), and when the work ends records it once ([`AppState::ended`]):
//! metrics, the audit log, the budget and a usage record. One-shot executions, cells,
//! commands, background processes and page renders are all accounted the same way.

use super::auth::{Caller, usage};
use super::metrics::Kind;
use super::run_to_end::run_to_end;
use super::{ApiError, AppState};
use crate::cluster::ClusterError;
use crate::database::NewSandbox;
use futures_util::{Stream, StreamExt};
use soulbox_engine::process::{ProcessEvent, ProcessExit, ProcessSpec, RenderRequest, RenderedPage};
use soulbox_engine::sandbox::{CommandResult, ProcessInfo};
use soulbox_engine::{ExecRequest, ExecResult, Execution, ExecutionEvent, Outcome, RunOptions, Sandbox, SandboxSpec};
use std::future::IntoFuture;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How long a kill waits for the sandbox's container to be removed before answering anyway.
const KILL_TEARDOWN_WAIT: Duration = Duration::from_secs(10);

/// What ran, for the records: its kind and its language's label (`bash` for commands and
/// processes, `browser` for renders).
#[derive(Debug, Clone, Copy)]
struct Ran {
    kind: Kind,
    language: &'static str,
}

impl Ran {
    fn command() -> Ran {
        Ran { kind: Kind::Command, language: "bash" }
    }
}

impl AppState {
    /// Records one piece of work that ended: metrics, audit, the tenant's budget and usage.
    fn ended(&self, caller: &Caller, ran: Ran, outcome: Outcome, took: Duration, fuel: Option<u64>) {
        self.ended_with_network(caller, ran, outcome, took, fuel, None);
    }

    /// [`Self::ended`] for an execution whose guest made HTTP requests (counted in its usage).
    fn ended_with_network(
        &self,
        caller: &Caller,
        ran: Ran,
        outcome: Outcome,
        took: Duration,
        fuel: Option<u64>,
        network: Option<soulbox_engine::NetworkUsage>,
    ) {
        self.metrics.execution(ran.kind, ran.language, outcome, took);
        self.audit.execution_ended(caller, ran.kind.name(), outcome);
        self.budgets.charge_execution(&caller.tenant, took);
        self.usage.record(usage(&caller.tenant, ran.kind.name(), ran.language, outcome, took, fuel, network));
    }

    /// The caller's slot for one more running piece of work, within its tenant's daily budget
    /// and its key's bound (across the cluster, in one).
    async fn admit(&self, caller: &Caller) -> Result<super::guard::ExecutionPermit, ApiError> {
        self.budgets.check_execution(&caller.tenant)?;
        self.guard.execution_slot(&caller.key, self.cluster.as_ref()).await
    }

    /// Runs one stateless execution for `caller`.
    pub async fn run_once(&self, caller: &Caller, mut request: ExecRequest) -> Result<ExecResult, ApiError> {
        self.check_packages(&request.packages)?;
        if let Some(policy) = request.network.take() {
            if !self.settings.allow_network {
                return Err(ApiError::BadRequest(
                    "network access is not allowed on this server (`network.allow_internet`)".into(),
                ));
            }
            request.network = Some(self.settings.tenant_network(policy));
        }
        let _slot = self.admit(caller).await?;
        let ran = Ran { kind: Kind::Stateless, language: request.language.name() };
        let result = self.engine.execute(request.with_owner(caller.tenant.0.clone())).await?;
        self.ended_with_network(caller, ran, result.outcome, result.duration, result.fuel_used, result.network);
        Ok(result)
    }

    /// Opens a sandbox for `caller`, with the configured environment and lifetime, within the
    /// tenant's quota (the registry's per-owner bound, reserved before anything runs).
    pub async fn open_sandbox(&self, caller: &Caller, mut spec: SandboxSpec) -> Result<Sandbox, ApiError> {
        if spec.network && !self.settings.allow_network {
            return Err(ApiError::BadRequest(
                "network access is not allowed on this server (`network.allow_internet`)".into(),
            ));
        }
        self.check_packages(&spec.packages)?;
        if spec.network {
            spec.egress = Some(self.settings.tenant_network(spec.egress.take().unwrap_or_default()));
        }
        self.budgets.check_sandbox(&caller.tenant, || self.list_sandboxes(&caller.tenant, &Default::default()))?;
        self.check_live()?;
        let sandbox = self.sandboxes.create(self.settings.sandbox_spec(spec, &caller.tenant)).await?;
        self.claim(std::slice::from_ref(&sandbox)).await?;
        Ok(sandbox)
    }

    /// In a cluster, refuses new sandboxes while this node's lease has run out.
    fn check_live(&self) -> Result<(), ApiError> {
        match &self.cluster {
            Some(cluster) if !cluster.is_live() => Err(ApiError::Unavailable(ClusterError::NotLive.to_string())),
            _ => Ok(()),
        }
    }

    /// In a cluster, makes this node the owner of its new `sandboxes`; if one cannot be owned,
    /// all are killed and the request fails.
    async fn claim(&self, sandboxes: &[Sandbox]) -> Result<(), ApiError> {
        let Some(cluster) = &self.cluster else { return Ok(()) };
        for sandbox in sandboxes {
            let id = sandbox.id();
            let claim = NewSandbox { id, tenant: sandbox.owner().unwrap_or("-"), template: sandbox.template().name() };
            if let Err(error) = cluster.claim(claim).await {
                tracing::info!(%error, sandbox = %id, "a new sandbox could not be claimed in the cluster; killed");
                for made in sandboxes {
                    // The teardown goes on in the background.
                    drop(self.sandboxes.kill(made.id()));
                }
                return Err(match error {
                    ClusterError::TenantQuota(_) => ApiError::QuotaExceeded(error.to_string()),
                    _ => ApiError::Unavailable(error.to_string()),
                });
            }
        }
        Ok(())
    }

    /// Refuses `packages` unless this server installs them (`packages.enabled`).
    fn check_packages(&self, packages: &[String]) -> Result<(), ApiError> {
        if packages.is_empty() || self.settings.allow_packages {
            return Ok(());
        }
        Err(ApiError::BadRequest(
            "installing Python packages is not enabled on this server (`packages.enabled`)".into(),
        ))
    }

    /// Forks `caller`'s sandbox `id` into `count` new sandboxes of theirs; all or none.
    pub async fn fork_sandbox(&self, caller: &Caller, id: &str, count: usize) -> Result<Vec<Sandbox>, ApiError> {
        let source = self.sandbox(&caller.tenant, id)?;
        self.budgets.check_sandbox(&caller.tenant, || self.list_sandboxes(&caller.tenant, &Default::default()))?;
        self.check_live()?;
        let forks = self.sandboxes.fork(&source, count).await?;
        self.claim(&forks).await?;
        Ok(forks)
    }

    /// Kills `caller`'s sandbox; its teardown (the container, every process) is complete when
    /// this returns.
    pub async fn kill_sandbox(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        self.sandbox(&caller.tenant, id)?;
        let teardown = self.sandboxes.kill(id)?;
        // The sandbox is gone already; a Docker engine slow to remove its container must not
        // turn that into a timeout: past the bound, the removal finishes in the background.
        if tokio::time::timeout(KILL_TEARDOWN_WAIT, teardown.into_future()).await.is_err() {
            tracing::warn!(sandbox = %id, "the sandbox's container is still being removed");
        }
        Ok(())
    }

    /// Runs a cell to its end, holding the caller's slot, and records it. A caller that goes
    /// away (a disconnect, a request timeout) neither stops it nor skips its accounting: the
    /// rest of it runs on a task of its own ([`run_to_end`]).
    pub async fn run_cell(
        &self,
        caller: &Caller,
        sandbox: &Sandbox,
        code: &str,
        options: RunOptions,
    ) -> Result<Execution, ApiError> {
        let slot = self.admit(caller).await?;
        let (state, caller, sandbox, code) = (self.clone(), caller.clone(), sandbox.clone(), code.to_owned());
        run_to_end(
            async move {
                let _held = slot;
                let execution = sandbox.run_code(&code, options).await?;
                let end = &execution.end;
                let ran = Ran { kind: Kind::Cell, language: end.language.name() };
                state.ended_with_network(&caller, ran, end.outcome, end.duration, end.fuel_used, end.network);
                Ok::<_, ApiError>(execution)
            }
            .in_current_span(),
        )
        .await
        .map_err(|e| ApiError::Internal(format!("a cell's work failed: {e}")))?
    }

    /// Runs a cell, yielding its events as they happen; a failure after the start is an `Err`
    /// item. The caller's slot is held, and the cell recorded, until the cell ends, whether or
    /// not the caller still reads.
    pub async fn stream_cell(
        &self,
        caller: &Caller,
        sandbox: &Sandbox,
        code: &str,
        options: RunOptions,
    ) -> Result<impl Stream<Item = Result<ExecutionEvent, ApiError>> + Send + 'static, ApiError> {
        let slot = self.admit(caller).await?;
        let events = sandbox.run_code_stream(code, options).await?;
        let (state, caller) = (self.clone(), caller.clone());
        let events = followed_to_the_end(events, move |item| {
            let _held = &slot;
            if let Ok(ExecutionEvent::End(end)) = item {
                let ran = Ran { kind: Kind::Cell, language: end.language.name() };
                state.ended_with_network(&caller, ran, end.outcome, end.duration, end.fuel_used, end.network);
            }
        });
        Ok(events.map(|item| item.map_err(ApiError::from)))
    }

    /// Runs a command in a sandbox's container to its end; like a cell, it runs and is
    /// recorded in a task of its own.
    pub async fn run_command(
        &self,
        caller: &Caller,
        sandbox: &Sandbox,
        spec: ProcessSpec,
    ) -> Result<CommandResult, ApiError> {
        let slot = self.admit(caller).await?;
        let (state, caller, sandbox) = (self.clone(), caller.clone(), sandbox.clone());
        let command = tokio::spawn(
            async move {
                let _held = slot;
                let result = sandbox.run_command(spec).await?;
                state.command_ended(&caller, Ran::command(), &result.exit);
                Ok::<_, ApiError>(result)
            }
            .in_current_span(),
        );
        command.await.map_err(|e| ApiError::Internal(format!("a command's task failed: {e}")))?
    }

    /// Runs a command, yielding its events as they happen; the caller's slot is held, and the
    /// command recorded, until it exits, whether or not the caller still reads.
    pub async fn stream_command(
        &self,
        caller: &Caller,
        sandbox: &Sandbox,
        spec: ProcessSpec,
    ) -> Result<impl Stream<Item = Result<ProcessEvent, ApiError>> + Send + 'static, ApiError> {
        let slot = self.admit(caller).await?;
        let (_, events) = sandbox.run_command_stream(spec).await?;
        let (state, caller) = (self.clone(), caller.clone());
        let events = followed_to_the_end(events, move |event| {
            let _held = &slot;
            if let ProcessEvent::Exit(exit) = event {
                state.command_ended(&caller, Ran::command(), exit);
            }
        });
        Ok(events.map(Ok))
    }

    /// Starts a background process (or a terminal). It outlives the request, so it holds no
    /// execution slot; it must fit the tenant's budget to start, and is recorded when it ends.
    pub async fn spawn_process(
        &self,
        caller: &Caller,
        sandbox: &Sandbox,
        spec: ProcessSpec,
    ) -> Result<ProcessInfo, ApiError> {
        self.budgets.check_execution(&caller.tenant)?;
        let info = sandbox.spawn(spec).await?;
        let (state, caller, sandbox, pid) = (self.clone(), caller.clone(), sandbox.clone(), info.pid);
        tokio::spawn(
            async move {
                // The sandbox going away ends the wait without an exit: nothing ran to record then.
                if let Ok(exit) = sandbox.wait_process(pid).await {
                    state.command_ended(&caller, Ran { kind: Kind::Process, language: "bash" }, &exit);
                }
            }
            .in_current_span(),
        );
        Ok(info)
    }

    /// Renders a page in `sandbox`'s browser, or in a fresh one without a sandbox.
    pub async fn render(
        &self,
        caller: &Caller,
        sandbox: Option<&Sandbox>,
        request: RenderRequest,
    ) -> Result<RenderedPage, ApiError> {
        request.validate().map_err(ApiError::BadRequest)?;
        let _slot = self.admit(caller).await?;
        let started = Instant::now();
        let rendered: Result<RenderedPage, ApiError> = match sandbox {
            Some(sandbox) => sandbox.render(request).await.map_err(Into::into),
            None => self.engine.render(request).await.map_err(Into::into),
        };
        // A render that ran is recorded, a failed one too (the browser crashed); one refused
        // before it ran (no browser, a bad page, a busy backend) is not.
        let outcome = match &rendered {
            Ok(_) => Some(Outcome::Completed),
            Err(ApiError::Internal(_)) => Some(Outcome::Crashed),
            Err(_) => None,
        };
        if let Some(outcome) = outcome {
            self.ended(caller, Ran { kind: Kind::Render, language: "browser" }, outcome, started.elapsed(), None);
        }
        rendered
    }

    fn command_ended(&self, caller: &Caller, ran: Ran, exit: &ProcessExit) {
        self.ended(caller, ran, exit.outcome, exit.duration, None);
    }
}

/// Events handed from a follower task to the caller at a time: the engine's backpressure
/// still reaches the guest while the caller reads.
const HANDED_OVER_EVENTS: usize = 16;

/// `events`, read to their end by a task of its own that shows each to `seen` first: the work
/// is followed (and accounted) to its end even when the caller stops reading or goes away.
fn followed_to_the_end<T: Send + 'static>(
    events: impl Stream<Item = T> + Send + 'static,
    mut seen: impl FnMut(&T) + Send + 'static,
) -> impl Stream<Item = T> + Send + 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel(HANDED_OVER_EVENTS);
    tokio::spawn(
        async move {
            let mut events = std::pin::pin!(events);
            let mut reader = Some(sender);
            while let Some(event) = events.next().await {
                seen(&event);
                if let Some(sender) = &reader
                    && sender.send(event).await.is_err()
                {
                    reader = None; // the caller left: keep reading so the work ends and is recorded
                }
            }
        }
        .in_current_span(),
    );
    futures_util::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|e| (e, receiver)) })
}
