//! The sandbox layer on fake backends ([`crate::fakes`]): its edge cases without wasmtime or
//! Docker.

use super::*;
use crate::fakes::FakeBackend;
use crate::process::{ProcessEvent, ProcessSpec};
use crate::result::Outcome;
use std::sync::atomic::Ordering;

fn registry(backend: &FakeBackend, config: SandboxesConfig) -> (Sandboxes, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let mut engine = Engine::builder();
    engine.backend(backend.clone());
    let config = SandboxesConfig {
        workspace_root: root.path().join("sandboxes"),
        snapshot_dir: Some(root.path().join("snapshots")),
        ..config
    };
    (Sandboxes::new(engine.build(), config).unwrap(), root)
}

fn owned(owner: &str) -> SandboxSpec {
    SandboxSpec { owner: Some(owner.into()), ..SandboxSpec::default() }
}

fn command(line: &str) -> ProcessSpec {
    ProcessSpec { command: line.into(), ..ProcessSpec::default() }
}

#[tokio::test]
async fn cells_keep_state_and_a_lost_kernel_comes_back_fresh() {
    let backend = FakeBackend::everything();
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    assert_eq!(sandbox.run_code("count", RunOptions::default()).await.unwrap().stdout, "1\n");
    assert_eq!(sandbox.run_code("count", RunOptions::default()).await.unwrap().stdout, "2\n");
    let lost = sandbox.run_code("lose", RunOptions::default()).await;
    assert!(lost.is_err(), "a backend fault is an error, not a result: {lost:?}");
    let again = sandbox.run_code("count", RunOptions::default()).await.unwrap();
    assert_eq!(again.stdout, "1\n", "a fresh kernel");
    assert!(again.end.context_restarted, "and the caller is told its state is gone");
    assert_eq!(backend.record.kernels_started.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_owner_reaches_every_kernel() {
    let backend = FakeBackend::everything();
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(owned("tenant-a")).await.unwrap();
    sandbox.create_context(Language::JavaScript, None).await.unwrap();
    let owners = backend.record.owners.lock().unwrap().clone();
    assert_eq!(owners, vec![Some("tenant-a".to_owned()); 2]);
}

#[tokio::test]
async fn concurrent_creations_never_exceed_an_owners_quota() {
    let backend = FakeBackend::everything();
    let config = SandboxesConfig { max_per_owner: 2, ..SandboxesConfig::default() };
    let (sandboxes, _root) = registry(&backend, config);
    let attempts = (0..10).map(|_| sandboxes.create(owned("greedy")));
    let created = futures_util::future::join_all(attempts).await;
    let refused = created.iter().filter(|c| matches!(c, Err(SandboxError::QuotaExceeded(_)))).count();
    assert_eq!((created.len() - refused, refused), (2, 8), "{created:?}");
    assert_eq!(sandboxes.list_owned(Some("greedy"), &BTreeMap::new()).len(), 2);
    sandboxes.create(owned("modest")).await.expect("another owner is not held back");
}

#[tokio::test]
async fn an_awaited_kill_has_removed_the_machine_and_the_workspace() {
    let backend = FakeBackend::everything();
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    sandbox.spawn(command("hang")).await.unwrap();
    let workspace = sandbox.shared.workspace.host_path().to_path_buf();
    assert!(workspace.exists());
    let teardown = sandboxes.kill(sandbox.id()).unwrap();
    assert!(!workspace.exists(), "the workspace goes before kill returns");
    teardown.await;
    assert_eq!(backend.record.machines_shut.load(Ordering::SeqCst), 1, "the machine is gone once awaited");
    assert!(matches!(sandbox.run_code("1", RunOptions::default()).await, Err(SandboxError::NotFound(_))));
    assert!(matches!(sandboxes.kill(sandbox.id()), Err(SandboxError::NotFound(_))));
}

#[tokio::test]
async fn a_process_log_keeps_the_newest_output_and_says_what_was_dropped() {
    let backend = FakeBackend::everything();
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    // 3,000 events of 1,000 bytes: three times what is kept.
    let started = sandbox.spawn(command("flood 3000 1000")).await.unwrap();
    sandbox.wait_process(started.pid).await.unwrap();
    let mut output = sandbox.process_output(started.pid).unwrap();
    let mut events = Vec::new();
    while let Some(event) = output.next_event().await {
        events.push(event);
    }
    let first = events.first().unwrap();
    assert!(
        matches!(first, ProcessEvent::Stderr { text } if text.contains("earlier output was not kept")),
        "{first:?}"
    );
    let kept: usize = events[1..events.len() - 1]
        .iter()
        .map(|e| match e {
            ProcessEvent::Stdout { text } => text.len(),
            other => panic!("unexpected {other:?}"),
        })
        .sum();
    assert!(kept <= processes::MAX_LOG_BYTES && kept > processes::MAX_LOG_BYTES - 1000, "{kept}");
    let newest = &events[events.len() - 2];
    assert_eq!(newest, &ProcessEvent::Stdout { text: "9".repeat(1000) }, "the newest output is kept");
    assert!(matches!(events.last(), Some(ProcessEvent::Exit(exit)) if exit.exit_code == Some(0)));
}

#[tokio::test]
async fn a_reader_that_fell_behind_is_told_how_much_it_missed() {
    let backend = FakeBackend::everything();
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let started = sandbox.spawn(command("flood 5000 10")).await.unwrap();
    // Subscribed before the process's events are pumped (this runtime has one thread and this
    // task has not yielded), then read only after all of them went by.
    let mut live = sandbox.process_output(started.pid).unwrap();
    sandbox.wait_process(started.pid).await.unwrap();
    let first = live.next_event().await.unwrap();
    assert!(
        matches!(&first, ProcessEvent::Stderr { text } if text.contains("output events skipped: the reader fell behind")),
        "{first:?}"
    );
    let mut rest = Vec::new();
    while let Some(event) = live.next_event().await {
        rest.push(event);
    }
    assert!(matches!(rest.last(), Some(ProcessEvent::Exit(_))), "the exit always arrives");
}

#[tokio::test]
async fn finished_processes_past_the_bound_are_forgotten_oldest_first() {
    let backend = FakeBackend::everything();
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let mut pids = Vec::new();
    for _ in 0..processes::MAX_FINISHED + 5 {
        let started = sandbox.spawn(command("exit 3")).await.unwrap();
        let exit = sandbox.wait_process(started.pid).await.unwrap();
        assert_eq!((exit.exit_code, exit.outcome), (Some(3), Outcome::Completed));
        pids.push(started.pid);
    }
    let listed = sandbox.processes();
    assert!(listed.len() <= processes::MAX_FINISHED + 1, "{}", listed.len());
    assert!(matches!(sandbox.process(pids[0]), Err(SandboxError::ProcessNotFound(_))), "the oldest went first");
    sandbox.process(*pids.last().unwrap()).expect("the newest is kept");
}

#[tokio::test]
async fn without_a_machine_backend_commands_are_refused_cleanly() {
    let languages = [Language::Python];
    let capabilities = crate::Capabilities::new(crate::BackendKind::Wasm).languages(languages).kernels(languages);
    let backend = FakeBackend::with("kernels-only", capabilities);
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let refused = sandbox.spawn(command("print hi")).await.unwrap_err();
    assert!(matches!(refused, SandboxError::Engine(EngineError::NoMachines)), "{refused:?}");
    let refused = sandbox.create_context(Language::JavaScript, None).await.unwrap_err();
    assert!(matches!(refused, SandboxError::Engine(EngineError::NoContexts { .. })), "{refused:?}");
    sandboxes.kill(sandbox.id()).unwrap().await;
}

#[tokio::test]
async fn a_pause_stops_the_machine_with_its_processes_and_the_next_command_starts_another() {
    let backend = FakeBackend::everything();
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let hanging = sandbox.spawn(command("hang")).await.unwrap();
    let report = sandbox.pause().await.unwrap();
    assert_eq!((report.processes_restored, report.processes_stopped), (false, 1));
    assert_eq!(backend.record.machines_shut.load(Ordering::SeqCst), 1, "the machine is gone once paused");
    let ended = sandbox.wait_process(hanging.pid).await.unwrap();
    assert_eq!(ended.outcome, Outcome::Killed, "{ended:?}");
    assert!(ended.message.as_deref().is_some_and(|m| m.contains("paused")), "{ended:?}");
    // A paused sandbox with no machine stops nothing; a command after the pause starts one.
    assert_eq!(sandbox.pause().await.unwrap().processes_stopped, 0);
    let after = sandbox.run_command(command("print again")).await.unwrap();
    assert_eq!(after.stdout, "again\n");
    assert_eq!(backend.record.machines_started.load(Ordering::SeqCst), 2);
    sandboxes.kill(sandbox.id()).unwrap().await;
    assert_eq!(backend.record.machines_shut.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_paused_sandbox_keeps_its_state_on_disk_and_a_cell_resumes_it() {
    let backend = FakeBackend::everything();
    let (sandboxes, root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    sandbox.create_context(Language::JavaScript, None).await.unwrap();
    for _ in 0..3 {
        sandbox.run_code("count", RunOptions::default()).await.unwrap();
    }
    let report = sandbox.pause().await.unwrap();
    assert_eq!((report.contexts, report.processes_restored), (2, false));
    assert!(report.stored_bytes > 0);
    assert_eq!(sandbox.info().state, SandboxState::Paused);
    // A cell resumes its own context, which goes on from where it was.
    assert_eq!(sandbox.run_code("count", RunOptions::default()).await.unwrap().stdout, "4\n");
    assert_eq!(sandbox.info().state, SandboxState::Running);
    sandbox.pause().await.unwrap();
    assert_eq!(sandbox.resume().await.unwrap().state, SandboxState::Running);
    assert_eq!(sandbox.run_code("count", RunOptions::default()).await.unwrap().stdout, "5\n");
    assert_eq!(backend.record.kernels_started.load(Ordering::SeqCst), 2, "restored, never restarted");

    // A damaged checkpoint is refused and its context stays paused; the sandbox lives on.
    sandbox.pause().await.unwrap();
    let blobs: Vec<_> = walk(&root.path().join("snapshots"));
    assert!(!blobs.is_empty());
    for blob in &blobs {
        std::fs::write(blob, b"not zstd").unwrap();
    }
    let refused = sandbox.resume().await.unwrap_err();
    assert!(matches!(refused, SandboxError::Checkpoint(BlobError::Corrupt { .. })), "{refused:?}");
    assert!(!sandbox.is_gone());
    sandboxes.kill(sandbox.id()).unwrap().await;
    sandboxes.registry.collect_checkpoints(false).await;
    assert!(walk(&root.path().join("snapshots")).is_empty(), "a killed sandbox's checkpoints are collected");
}

#[tokio::test]
async fn a_checkpoint_stores_only_what_changed_and_replaced_ones_are_collected() {
    let backend = FakeBackend::everything();
    let (sandboxes, root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    sandbox.run_code("count", RunOptions::default()).await.unwrap();
    let first = sandbox.checkpoint().await.unwrap();
    assert_eq!(first.contexts, 1);
    assert_eq!(sandbox.info().checkpointed_at_ms, Some(first.checkpointed_at_ms));
    assert_eq!(sandbox.info().state, SandboxState::Running, "a checkpoint keeps the sandbox running");
    sandbox.run_code("count", RunOptions::default()).await.unwrap();
    let second = sandbox.checkpoint().await.unwrap();
    assert!(second.new_bytes < first.new_bytes, "the unchanged part was not stored again: {second:?} {first:?}");
    let before = walk(&root.path().join("snapshots")).len();
    assert_eq!(sandboxes.registry.collect_checkpoints(false).await, 2, "the first's index and changed part");
    assert_eq!(walk(&root.path().join("snapshots")).len(), before - 2);
    sandbox.pause().await.unwrap();
    assert_eq!(sandbox.run_code("count", RunOptions::default()).await.unwrap().stdout, "3\n");
}

/// Opens a registry on `root` (the same directories each time), as a new process would.
fn reopen(backend: &FakeBackend, root: &std::path::Path) -> Sandboxes {
    let mut engine = Engine::builder();
    engine.backend(backend.clone());
    let config = SandboxesConfig {
        workspace_root: root.join("sandboxes"),
        snapshot_dir: Some(root.join("snapshots")),
        ..SandboxesConfig::default()
    };
    Sandboxes::new(engine.build(), config).unwrap()
}

#[tokio::test]
async fn a_sandbox_checkpointed_after_every_cell_outlives_its_registry_without_a_pause() {
    let backend = FakeBackend::everything();
    let root = tempfile::tempdir().unwrap();
    let first = reopen(&backend, root.path());
    let spec = SandboxSpec { checkpoint: CheckpointPolicy::EveryCell, ..SandboxSpec::default() };
    let durable = first.create(spec).await.unwrap();
    for _ in 0..3 {
        durable.run_code("count", RunOptions::default()).await.unwrap();
    }
    let idle = durable.create_context(Language::JavaScript, None).await.unwrap();
    assert!(durable.info().checkpointed_at_ms.is_some());
    let on_pause = first.create(SandboxSpec::default()).await.unwrap();
    on_pause.run_code("count", RunOptions::default()).await.unwrap();
    on_pause.checkpoint().await.unwrap();
    let (durable_id, on_pause_id) = (durable.id().to_owned(), on_pause.id().to_owned());
    drop((durable, on_pause, first));

    let second = reopen(&backend, root.path());
    let back = second.get(&durable_id).unwrap();
    assert_eq!(back.info().state, SandboxState::Paused);
    assert_eq!(back.info().checkpoint, CheckpointPolicy::EveryCell);
    assert_eq!(back.run_code("count", RunOptions::default()).await.unwrap().stdout, "4\n");
    let options = RunOptions { context: Some(idle.id), ..RunOptions::default() };
    let first_cell = back.run_code("count", options).await.unwrap();
    assert!(!first_cell.end.context_restarted, "a context that never ran starts as a new one would");
    // A checkpoint on demand is the truth until the next cell.
    let checkpointed = second.get(&on_pause_id).unwrap();
    assert_eq!(checkpointed.run_code("count", RunOptions::default()).await.unwrap().stdout, "2\n");
    drop((back, checkpointed, second));

    let third = reopen(&backend, root.path());
    let back = third.get(&durable_id).unwrap();
    assert_eq!(back.run_code("count", RunOptions::default()).await.unwrap().stdout, "5\n");
    let lost = third.get(&on_pause_id).unwrap_err();
    assert!(matches!(lost, SandboxError::Lost { .. }), "it ran a cell after its checkpoint: {lost:?}");
}

#[tokio::test]
async fn a_sandbox_is_idle_from_when_it_opens_not_from_when_its_making_began() {
    let backend = FakeBackend::everything();
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let started = backend.record.kernel_started_at.lock().unwrap().expect("its default context started");
    let last_active = sandbox.shared.clock.lock().unwrap().last_active;
    // Counted from before, a default context slower to start than the idle timeout had the
    // sandbox paused or killed by the reaper's first look after it opened.
    assert!(last_active >= started, "idle from before its default context started");
}

#[tokio::test]
async fn an_idle_sandbox_can_pause_instead_of_dying_and_resume_on_request_only() {
    let backend = FakeBackend::everything();
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let spec = SandboxSpec { on_idle: IdleAction::Pause, auto_resume: false, ..SandboxSpec::default() };
    let sandbox = sandboxes.create(spec).await.unwrap();
    sandbox.run_code("count", RunOptions::default()).await.unwrap();
    // Idle for longer than this from now on (set after the cell, which a reaper's look between
    // the creation and the cell would otherwise refuse).
    sandbox.set_timeouts(Some(Duration::from_millis(1)), None).unwrap();
    let mut waited = Duration::ZERO;
    while sandbox.info().state != SandboxState::Paused {
        assert!(waited < Duration::from_secs(30), "the reaper never paused the idle sandbox");
        tokio::time::sleep(REAP_INTERVAL).await;
        waited += REAP_INTERVAL;
    }
    assert!(!sandbox.is_gone(), "paused, not killed");
    let refused = sandbox.run_code("count", RunOptions::default()).await.unwrap_err();
    assert!(matches!(refused, SandboxError::Paused(_)), "{refused:?}");
    sandbox.resume().await.unwrap();
    assert_eq!(sandbox.run_code("count", RunOptions::default()).await.unwrap().stdout, "2\n");
}

/// The checkpoint blobs under `dir` (named by their 64-digit hash; not the lock or manifests).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let is_blob = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.len() == 64);
        if path.is_dir() {
            files.extend(walk(&path))
        } else if is_blob {
            files.push(path)
        }
    }
    files
}

#[tokio::test]
async fn forks_start_where_their_source_was_and_then_go_their_own_way() {
    let backend = FakeBackend::everything();
    let config = SandboxesConfig { max_per_owner: 4, ..SandboxesConfig::default() };
    let (sandboxes, _root) = registry(&backend, config);
    let source = sandboxes.create(owned("tenant-a")).await.unwrap();
    source.files().unwrap().write("/data/a.txt", b"from the source").await.unwrap();
    for _ in 0..2 {
        source.run_code("count", RunOptions::default()).await.unwrap();
    }
    let forks = sandboxes.fork(&source, 2).await.unwrap();
    assert_eq!(forks.len(), 2);
    let mut seeds = Vec::new();
    for fork in &forks {
        assert_ne!(fork.id(), source.id());
        assert_eq!(fork.owner(), Some("tenant-a"));
        assert_eq!(fork.contexts().iter().map(|c| c.id.clone()).collect::<Vec<_>>(), {
            source.contexts().iter().map(|c| c.id.clone()).collect::<Vec<_>>()
        });
        assert_eq!(fork.run_code("count", RunOptions::default()).await.unwrap().stdout, "3\n", "state carried over");
        seeds.push(fork.run_code("seed", RunOptions::default()).await.unwrap().stdout);
        assert_eq!(fork.files().unwrap().read("/data/a.txt").await.unwrap(), b"from the source");
        fork.files().unwrap().write("/data/a.txt", fork.id().as_bytes()).await.unwrap();
    }
    assert_ne!(seeds[0], seeds[1], "each fork has its own entropy");
    assert_ne!(seeds[0], "0\n");
    assert_eq!(source.run_code("seed", RunOptions::default()).await.unwrap().stdout, "0\n", "the source keeps its own");
    assert_eq!(source.files().unwrap().read("/data/a.txt").await.unwrap(), b"from the source", "files are not shared");
    assert_eq!(backend.record.kernels_started.load(Ordering::SeqCst), 1, "restored, never started afresh");

    // All or nothing within the owner's quota (4: the source and two forks are open).
    let refused = sandboxes.fork(&source, 2).await.unwrap_err();
    assert!(matches!(refused, SandboxError::QuotaExceeded(_)), "{refused:?}");
    assert_eq!(sandboxes.list_owned(Some("tenant-a"), &BTreeMap::new()).len(), 3);
    assert!(matches!(sandboxes.fork(&source, 0).await, Err(SandboxError::Invalid(_))));
    assert!(matches!(sandboxes.fork(&source, MAX_FORKS + 1).await, Err(SandboxError::Invalid(_))));

    // A paused source forks from its checkpoints.
    source.pause().await.unwrap();
    let fork = sandboxes.fork(&source, 1).await.unwrap().remove(0);
    assert_eq!(fork.run_code("count", RunOptions::default()).await.unwrap().stdout, "4\n");
    assert_eq!(source.info().state, SandboxState::Paused, "forking does not resume the source");
}

#[tokio::test]
async fn a_closing_registry_keeps_paused_sandboxes_for_the_next_one() {
    let backend = FakeBackend::everything();
    let root = tempfile::tempdir().unwrap();
    let config = || SandboxesConfig {
        workspace_root: root.path().join("sandboxes"),
        snapshot_dir: Some(root.path().join("snapshots")),
        ..SandboxesConfig::default()
    };
    let engine = || {
        let mut engine = Engine::builder();
        engine.backend(backend.clone());
        engine.build()
    };
    let first = Sandboxes::new(engine(), config()).unwrap();
    let paused = first.create(SandboxSpec::default()).await.unwrap();
    paused.files().unwrap().write("/kept.txt", b"kept").await.unwrap();
    paused.run_code("count", RunOptions::default()).await.unwrap();
    paused.pause().await.unwrap();
    let running = first.create(SandboxSpec::default()).await.unwrap();
    let (paused_id, running_id) = (paused.id().to_owned(), running.id().to_owned());
    drop((paused, running, first));

    let second = Sandboxes::new(engine(), config()).unwrap();
    let back = second.get(&paused_id).unwrap();
    assert_eq!(back.info().state, SandboxState::Paused);
    assert_eq!(back.files().unwrap().read("/kept.txt").await.unwrap(), b"kept");
    assert_eq!(back.run_code("count", RunOptions::default()).await.unwrap().stdout, "2\n");
    let lost = second.get(&running_id).unwrap_err();
    assert!(matches!(lost, SandboxError::Lost { .. }), "a running sandbox is reported lost, not unknown: {lost:?}");
    assert_eq!(std::fs::read_dir(root.path().join("sandboxes")).unwrap().count(), 1, "only the paused one's workspace");
}

#[tokio::test]
async fn a_saved_template_starts_new_sandboxes_where_it_was_per_owner_and_version() {
    let backend = FakeBackend::everything();
    let root = tempfile::tempdir().unwrap();
    let first = reopen(&backend, root.path());
    let source = first.create(owned("tenant-a")).await.unwrap();
    source.files().unwrap().write("/data.csv", b"a,b\n1,2\n").await.unwrap();
    for _ in 0..2 {
        source.run_code("count", RunOptions::default()).await.unwrap();
    }
    let v1 = first.save_template(&source, "prepared").await.unwrap();
    assert_eq!((v1.name.as_str(), v1.version, v1.contexts[0].execution_count), ("prepared", 1, 2));
    source.run_code("count", RunOptions::default()).await.unwrap();
    let v2 = first.save_template(&source, "prepared").await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(source.run_code("count", RunOptions::default()).await.unwrap().stdout, "4\n", "the source goes on");
    assert!(matches!(first.save_template(&source, "no spaces").await, Err(SandboxError::Invalid(_))));
    drop((source, first));

    // Templates outlive their registry; each owner sees only its own.
    let second = reopen(&backend, root.path());
    assert_eq!(second.list_templates(Some("tenant-a")).len(), 2);
    assert!(second.list_templates(Some("tenant-b")).is_empty());
    let from = |owner: &str, version| SandboxSpec {
        from_template: Some(TemplateRef { name: "prepared".into(), version }),
        ..owned(owner)
    };
    let refused = second.create(from("tenant-b", None)).await.unwrap_err();
    assert!(matches!(refused, SandboxError::TemplateNotFound(_)), "{refused:?}");
    let latest = second.create(from("tenant-a", None)).await.unwrap();
    assert_eq!(latest.run_code("count", RunOptions::default()).await.unwrap().stdout, "4\n", "from version 2");
    assert_eq!(latest.files().unwrap().read("/data.csv").await.unwrap(), b"a,b\n1,2\n");
    assert_ne!(latest.run_code("seed", RunOptions::default()).await.unwrap().stdout, "0\n", "fresh entropy");
    let older = second.create(from("tenant-a", Some(1))).await.unwrap();
    assert_eq!(older.run_code("count", RunOptions::default()).await.unwrap().stdout, "3\n", "from version 1");
    let env = SandboxSpec { env: [("A".into(), "b".into())].into(), ..from("tenant-a", None) };
    assert!(matches!(second.create(env).await, Err(SandboxError::Invalid(_))), "the template's environment is fixed");

    // Deleting a version, then the rest; the sandboxes made from them live on.
    assert_eq!(second.delete_template(Some("tenant-a"), "prepared", Some(1)).unwrap(), 1);
    assert!(matches!(second.template(Some("tenant-a"), "prepared", Some(1)), Err(SandboxError::TemplateNotFound(_))));
    assert_eq!(second.template(Some("tenant-a"), "prepared", None).unwrap().version, 2);
    assert!(matches!(
        second.delete_template(Some("tenant-b"), "prepared", None),
        Err(SandboxError::TemplateNotFound(_))
    ));
    assert_eq!(second.delete_template(Some("tenant-a"), "prepared", None).unwrap(), 1);
    second.registry.collect_checkpoints(true).await;
    assert_eq!(older.run_code("count", RunOptions::default()).await.unwrap().stdout, "4\n");
    assert!(second.list_templates(Some("tenant-a")).is_empty());
}

/// A ledger that keeps what it is told.
#[derive(Debug, Default)]
struct Kept(Mutex<Vec<LedgerEntry>>);

impl SandboxLedger for Kept {
    fn record(&self, entry: LedgerEntry) {
        self.0.lock().unwrap().push(entry);
    }
}

impl Kept {
    /// The states told for `id`, in order, with how many checkpoints each named.
    fn states(&self, id: &str) -> Vec<(LedgerState, usize)> {
        self.0.lock().unwrap().iter().filter(|e| e.id == id).map(|e| (e.state, e.checkpoints.len())).collect()
    }
}

#[tokio::test]
async fn the_ledger_is_told_every_state_a_sandbox_goes_through_and_what_an_earlier_process_lost() {
    let backend = FakeBackend::everything();
    let root = tempfile::tempdir().unwrap();
    let open = |ledger: &Arc<Kept>| {
        let mut engine = Engine::builder();
        engine.backend(backend.clone());
        let config = SandboxesConfig {
            workspace_root: root.path().join("sandboxes"),
            snapshot_dir: Some(root.path().join("snapshots")),
            ledger: Some(Arc::clone(ledger) as Arc<dyn SandboxLedger>),
            ..SandboxesConfig::default()
        };
        Sandboxes::new(engine.build(), config).unwrap()
    };
    let ledger = Arc::new(Kept::default());
    let first = open(&ledger);
    let paused = first.create(owned("acme")).await.unwrap();
    paused.run_code("count", RunOptions::default()).await.unwrap();
    paused.pause().await.unwrap();
    paused.run_code("count", RunOptions::default()).await.unwrap();
    paused.pause().await.unwrap();
    let killed = first.create(owned("acme")).await.unwrap();
    first.kill(killed.id()).unwrap().await;
    let running = first.create(owned("acme")).await.unwrap();
    running.run_code("count", RunOptions::default()).await.unwrap();
    let refused = first.create(SandboxSpec { id: Some(paused.id().to_owned()), ..owned("acme") }).await;
    assert!(matches!(refused, Err(SandboxError::Exists(_))), "{refused:?}");
    use LedgerState::{Killed, Lost, Paused, Running};
    assert_eq!(ledger.states(paused.id()), [(Running, 0), (Paused, 1), (Running, 1), (Paused, 1)]);
    assert_eq!(ledger.states(killed.id()), [(Running, 0), (Killed, 0)], "a refused duplicate ends nothing");
    assert_eq!(ledger.states(running.id()), [(Running, 0)]);
    assert!(ledger.0.lock().unwrap().iter().all(|e| e.owner.as_deref() == Some("acme")));
    let (paused_id, running_id) = (paused.id().to_owned(), running.id().to_owned());
    drop((paused, killed, running, first));

    let after = Arc::new(Kept::default());
    let second = open(&after);
    assert_eq!(after.states(&paused_id), [(Paused, 1)], "taken back paused");
    assert_eq!(after.states(&running_id), [(Lost, 0)]);
    let lost = after.0.lock().unwrap().iter().find(|e| e.id == running_id).cloned().unwrap();
    assert!(lost.why.as_deref().is_some_and(|why| !why.is_empty()), "{lost:?}");
    assert_eq!(lost.owner.as_deref(), Some("acme"));
    drop(second);
}

#[tokio::test]
async fn a_creation_given_up_halfway_leaves_no_workspace_behind() {
    let backend = FakeBackend::everything();
    let (sandboxes, root) = registry(&backend, SandboxesConfig::default());
    let workspaces = || std::fs::read_dir(root.path().join("sandboxes")).unwrap().count();
    backend.record.stall_kernels.store(true, Ordering::SeqCst);
    let creating = tokio::spawn({
        let sandboxes = sandboxes.clone();
        async move { sandboxes.create(SandboxSpec::default()).await }
    });
    backend.record.kernel_stalled.notified().await;
    assert_eq!(workspaces(), 1, "its workspace exists while its kernel starts");
    creating.abort();
    assert!(creating.await.unwrap_err().is_cancelled());
    assert_eq!(workspaces(), 0, "a caller that gave up takes its workspace with it");
    assert_eq!(sandboxes.len(), 0);

    // The same for a fork: the forks made before the caller gave up go too.
    backend.record.stall_kernels.store(false, Ordering::SeqCst);
    let source = sandboxes.create(SandboxSpec::default()).await.unwrap();
    source.run_code("count", RunOptions::default()).await.unwrap();
    assert_eq!(workspaces(), 1);
    backend.record.stall_kernels.store(true, Ordering::SeqCst);
    let forking = tokio::spawn({
        let (sandboxes, source) = (sandboxes.clone(), source.clone());
        async move { sandboxes.fork(&source, 3).await }
    });
    backend.record.kernel_stalled.notified().await;
    forking.abort();
    assert!(forking.await.unwrap_err().is_cancelled());
    assert_eq!((workspaces(), sandboxes.len()), (1, 1), "only the source is left");
}

#[tokio::test]
async fn a_record_in_a_format_this_code_does_not_read_is_lost_to_its_owner_and_unknown_to_others() {
    let backend = FakeBackend::everything();
    let root = tempfile::tempdir().unwrap();
    drop(reopen(&backend, root.path()));
    let old = serde_json::json!({"format": 1, "id": "sbx-old", "owner": "acme", "state": "checkpointed"});
    std::fs::write(root.path().join("snapshots/sandboxes/sbx-old.json"), old.to_string()).unwrap();
    let sandboxes = reopen(&backend, root.path());
    let lost = sandboxes.get_owned(Some("acme"), "sbx-old").unwrap_err();
    assert!(matches!(&lost, SandboxError::Lost { why, .. } if why.contains("format 1")), "{lost:?}");
    let other = sandboxes.get_owned(Some("other"), "sbx-old").unwrap_err();
    assert!(matches!(other, SandboxError::NotFound(_)), "another tenant learns nothing: {other:?}");
}

#[tokio::test]
async fn an_owner_past_its_snapshot_bound_cannot_checkpoint_more_and_others_can() {
    let backend = FakeBackend::everything();
    let config = SandboxesConfig { max_snapshot_bytes_per_owner: Some(1), ..SandboxesConfig::default() };
    let (sandboxes, _root) = registry(&backend, config);
    let first = sandboxes.create(owned("acme")).await.unwrap();
    first.run_code("count", RunOptions::default()).await.unwrap();
    first.pause().await.expect("nothing stored yet: the first checkpoint may take the owner past its bound");
    let second = sandboxes.create(owned("acme")).await.unwrap();
    second.run_code("count", RunOptions::default()).await.unwrap();
    for refused in [
        second.pause().await.map(drop),
        second.checkpoint().await.map(drop),
        sandboxes.fork(&second, 1).await.map(drop),
        sandboxes.save_template(&second, "prepared").await.map(drop),
    ] {
        assert!(
            matches!(&refused, Err(SandboxError::QuotaExceeded(why)) if why.contains("checkpoints")),
            "{refused:?}"
        );
    }
    let durable = SandboxSpec { checkpoint: CheckpointPolicy::EveryCell, ..owned("acme") };
    let durable = sandboxes.create(durable).await.unwrap();
    let cell = durable.run_code("count", RunOptions::default()).await.unwrap();
    assert!(cell.stderr.contains("could not be checkpointed"), "a cell says its checkpoint was refused: {cell:?}");
    assert_eq!(cell.stdout, "1\n", "the cell itself ran");

    let other = sandboxes.create(owned("globex")).await.unwrap();
    other.pause().await.expect("another owner has its own bound");
    // Killing the paused sandbox frees the owner's room.
    sandboxes.kill(first.id()).unwrap().await;
    second.pause().await.unwrap();
    // A registry that closes pauses every sandbox whatever its owner keeps.
    assert_eq!(sandboxes.pause_all().await, (3, 0));
}

#[tokio::test]
async fn a_paused_sandbox_is_kept_for_the_paused_lifetime_and_takes_back_its_own_when_it_resumes() {
    const HOUR_MS: u64 = 3_600_000;
    let backend = FakeBackend::everything();
    let root = tempfile::tempdir().unwrap();
    let open = || {
        let mut engine = Engine::builder();
        engine.backend(backend.clone());
        let config = SandboxesConfig {
            workspace_root: root.path().join("sandboxes"),
            snapshot_dir: Some(root.path().join("snapshots")),
            paused_lifetime: Some(Duration::from_secs(7 * 24 * 3600)),
            ..SandboxesConfig::default()
        };
        Sandboxes::new(engine.build(), config).unwrap()
    };
    let first = open();
    let spec = SandboxSpec { lifetime: Some(Duration::from_secs(600)), ..SandboxSpec::default() };
    let sandbox = first.create(spec).await.unwrap();
    let ends = |sandbox: &Sandbox| sandbox.info().expires_at_ms.saturating_sub(epoch_ms(SystemTime::now()));
    assert!(ends(&sandbox) <= 600_000);
    sandbox.pause().await.unwrap();
    assert!(ends(&sandbox) > 7 * 24 * HOUR_MS - HOUR_MS, "kept a week while paused: {}", ends(&sandbox));
    sandbox.pause().await.unwrap();
    let id = sandbox.id().to_owned();
    drop((sandbox, first));

    // A new process keeps it as long, and a cell gives it back the ten minutes it had left.
    let second = open();
    let back = second.get(&id).unwrap();
    assert!(ends(&back) > 7 * 24 * HOUR_MS - HOUR_MS, "{}", ends(&back));
    let forks = second.fork(&back, 1).await.unwrap();
    assert!(ends(&forks[0]) <= 600_000, "a paused source's fork runs on the lifetime it would take back");
    back.run_code("count", RunOptions::default()).await.unwrap();
    assert!(ends(&back) <= 600_000 && ends(&back) > 0, "{}", ends(&back));
}

#[tokio::test]
async fn a_languages_default_context_is_known_by_id_once_it_exists() {
    let backend = FakeBackend::everything();
    let (sandboxes, _root) = registry(&backend, SandboxesConfig::default());
    let sandbox = sandboxes.create(SandboxSpec { network: false, ..SandboxSpec::default() }).await.unwrap();
    assert!(!sandbox.allows_network());
    let python = sandbox.default_context_id(Language::Python).expect("the template's default context");
    assert_eq!(sandbox.contexts().iter().map(|c| c.id.clone()).collect::<Vec<_>>(), vec![python.clone()]);
    assert_eq!(sandbox.default_context_id(Language::JavaScript), None, "made on first use");
    let options = RunOptions { language: Some(Language::JavaScript), ..RunOptions::default() };
    sandbox.run_code("count", options).await.unwrap();
    let javascript = sandbox.default_context_id(Language::JavaScript).expect("made by the cell");
    assert_ne!(javascript, python);
    sandbox.remove_context(&python).await.unwrap();
    assert_eq!(sandbox.default_context_id(Language::Python), None, "a removed context is no default");
}
