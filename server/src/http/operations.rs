//! What a request does, whichever door it came in by: a REST route, an MCP tool or a
//! `/v1/tools` call.
//!
//! Each operation applies the caller's quotas, runs on the engine, counts metrics and records
//! usage, so every door enforces the same rules and reports the same way.

use super::auth::{Caller, usage};
use super::metrics::Kind;
use super::{ApiError, AppState};
use futures_util::{Stream, StreamExt};
use soulbox_engine::process::{ProcessEvent, ProcessExit, ProcessSpec};
use soulbox_engine::sandbox::CommandResult;
use soulbox_engine::{ExecRequest, ExecResult, Execution, ExecutionEvent, Language, RunOptions, Sandbox, SandboxSpec};

impl AppState {
    /// Runs one stateless execution for `caller`.
    pub async fn run_once(&self, caller: &Caller, request: ExecRequest) -> Result<ExecResult, ApiError> {
        let _slot = self.execution_slot(caller)?;
        self.budgets.check_execution(&caller.tenant)?;
        let language = request.language;
        let result = self.engine.execute(request.with_owner(caller.tenant.0.clone())).await?;
        self.metrics.execution(Kind::Stateless, language, result.outcome, result.duration);
        self.audit.execution_ended(caller, "stateless", result.outcome);
        self.budgets.charge_execution(&caller.tenant, result.duration);
        let record = usage(&caller.tenant, "stateless", language, result.outcome, result.duration, result.fuel_used);
        self.usage.record(record);
        Ok(result)
    }

    /// Opens a sandbox for `caller`, with the configured environment and lifetime, within the
    /// tenant's quota.
    pub async fn open_sandbox(&self, caller: &Caller, spec: SandboxSpec) -> Result<Sandbox, ApiError> {
        if spec.network && !self.settings.allow_network {
            return Err(ApiError::BadRequest(
                "network access is not allowed on this server (`network.allow_internet`)".into(),
            ));
        }
        self.budgets.check_sandbox(&caller.tenant, || self.list_sandboxes(&caller.tenant, &Default::default()))?;
        // The tenant owns it: its quota is the registry's per-owner bound, reserved before
        // anything runs.
        let sandbox = self.sandboxes.create(self.settings.sandbox_spec(spec, &caller.tenant)).await?;
        if let Err(error) = self.auth.record(&caller.tenant, &sandbox).await {
            let _ = self.sandboxes.kill(sandbox.id());
            return Err(error);
        }
        Ok(sandbox)
    }

    /// Kills `caller`'s sandbox; its teardown (the container, every process) is complete when
    /// this returns.
    pub async fn kill_sandbox(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        self.sandbox(&caller.tenant, id)?;
        self.sandboxes.kill(id)?.await;
        Ok(())
    }

    /// Runs a cell to its end.
    pub async fn run_cell(
        &self,
        caller: &Caller,
        sandbox: &Sandbox,
        code: &str,
        options: RunOptions,
    ) -> Result<Execution, ApiError> {
        let _slot = self.execution_slot(caller)?;
        self.budgets.check_execution(&caller.tenant)?;
        let language = cell_language(sandbox, &options);
        let execution = sandbox.run_code(code, options).await?;
        let end = &execution.end;
        self.metrics.execution(Kind::Cell, language, end.outcome, end.duration);
        self.audit.execution_ended(caller, "cell", end.outcome);
        self.budgets.charge_execution(&caller.tenant, end.duration);
        self.usage.record(usage(&caller.tenant, "cell", language, end.outcome, end.duration, end.fuel_used));
        Ok(execution)
    }

    /// Runs a cell, yielding its events as they happen. The caller's execution slot is held
    /// until the stream ends or is dropped; a failure after the start is an `Err` item.
    pub async fn stream_cell(
        &self,
        caller: &Caller,
        sandbox: &Sandbox,
        code: &str,
        options: RunOptions,
    ) -> Result<impl Stream<Item = Result<ExecutionEvent, ApiError>> + Send + 'static, ApiError> {
        let slot = self.execution_slot(caller)?;
        self.budgets.check_execution(&caller.tenant)?;
        let language = cell_language(sandbox, &options);
        let events = sandbox.run_code_stream(code, options).await?;
        let (state, caller) = (self.clone(), caller.clone());
        Ok(events.map(move |item| {
            let _held = &slot;
            if let Ok(ExecutionEvent::End(end)) = &item {
                state.metrics.execution(Kind::Cell, language, end.outcome, end.duration);
                state.audit.execution_ended(&caller, "cell", end.outcome);
                state.budgets.charge_execution(&caller.tenant, end.duration);
                state.usage.record(usage(&caller.tenant, "cell", language, end.outcome, end.duration, end.fuel_used));
            }
            item.map_err(ApiError::from)
        }))
    }

    /// Runs a command in a sandbox's container to its end.
    pub async fn run_command(
        &self,
        caller: &Caller,
        sandbox: &Sandbox,
        spec: ProcessSpec,
    ) -> Result<CommandResult, ApiError> {
        let _slot = self.execution_slot(caller)?;
        self.budgets.check_execution(&caller.tenant)?;
        let result = sandbox.run_command(spec).await?;
        self.command_ended(caller, &result.exit);
        Ok(result)
    }

    /// Runs a command, yielding its events as they happen; the caller's execution slot is held
    /// until the stream ends or is dropped.
    pub async fn stream_command(
        &self,
        caller: &Caller,
        sandbox: &Sandbox,
        spec: ProcessSpec,
    ) -> Result<impl Stream<Item = Result<ProcessEvent, ApiError>> + Send + 'static, ApiError> {
        let slot = self.execution_slot(caller)?;
        self.budgets.check_execution(&caller.tenant)?;
        let (_, events) = sandbox.run_command_stream(spec).await?;
        let (state, caller) = (self.clone(), caller.clone());
        Ok(events.map(move |event| {
            let _held = &slot;
            if let ProcessEvent::Exit(exit) = &event {
                state.command_ended(&caller, exit);
            }
            Ok(event)
        }))
    }

    fn command_ended(&self, caller: &Caller, exit: &ProcessExit) {
        self.metrics.execution(Kind::Command, Language::Bash, exit.outcome, exit.duration);
        self.audit.execution_ended(caller, "command", exit.outcome);
        self.budgets.charge_execution(&caller.tenant, exit.duration);
        self.usage.record(usage(&caller.tenant, "command", Language::Bash, exit.outcome, exit.duration, None));
    }

    fn execution_slot(&self, caller: &Caller) -> Result<super::guard::ExecutionPermit, ApiError> {
        self.guard.execution_slot(&caller.key)
    }
}

/// The language a cell runs in, for metrics: its context's, else the one asked for, else the
/// template's.
fn cell_language(sandbox: &Sandbox, options: &RunOptions) -> Language {
    let of_context = options.context.as_ref().and_then(|id| sandbox.contexts().into_iter().find(|c| &c.id == id));
    of_context.map(|c| c.language).or(options.language).unwrap_or(sandbox.template().language())
}
