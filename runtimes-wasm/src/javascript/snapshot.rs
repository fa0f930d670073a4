//! Builds SoulBox's pre-initialized QuickJS module with Wizer, once per machine.
//!
//! `Wizer::instrument` the reactor (with SoulBox's extra exports), instantiate it in an empty
//! world (no environment, no arguments, an empty root), start it as `qjs --std -e ''`
//! (`_initialize`, then `qjs_init_argv`), evaluate [`super::PRELUDE`] (the timers and the Node
//! globals), flush the output buffers, then `Wizer::snapshot` the instance's memory and
//! globals into a new module. A guest instantiated from it starts with the globals defined and
//! calls neither `_initialize` nor `qjs_init_argv`: [`super::begin`] gives it what the
//! snapshot froze (the environment, the arguments, entropy and the clocks' origin).

use super::{JavaScript, call0, eval, eval_named, init_argv};
use crate::engine_config::EngineSettings;
use crate::error::RuntimeError;
use soulbox_host_api::{GuestConfig, GuestRoot};
use std::path::Path;
use wasmtime_wizer::WasmtimeWizer;

/// The argv the snapshot starts QuickJS with: `std` and `os` as globals, an empty script.
const BUILD_ARGV: [&str; 4] = ["qjs", "--std", "-e", ""];

impl JavaScript {
    /// The snapshot module's bytes: read from `cache_dir` if built before, else built and stored.
    pub fn snapshot_wasm(
        &self,
        cache_dir: &Path,
        scratch: &Path,
        settings: &EngineSettings,
    ) -> Result<Vec<u8>, RuntimeError> {
        let (this, scratch, settings) = (self.clone(), scratch.to_path_buf(), *settings);
        crate::snapshot_cache::load_or_build(cache_dir, "javascript", &self.content_key(), move || {
            this.build_snapshot(&scratch, &settings)
        })
    }

    fn build_snapshot(&self, scratch: &Path, settings: &EngineSettings) -> Result<Vec<u8>, RuntimeError> {
        let fail = |message: String| RuntimeError::Snapshot { runtime: "javascript".into(), message };
        let wasm = self.wasm()?;
        let crate::snapshot_cache::Instrumented { wizer, context, engine, module, linker } =
            crate::snapshot_cache::instrument("javascript", &wasm, settings)?;

        std::fs::create_dir_all(scratch).map_err(|e| RuntimeError::io(scratch, e))?;
        let root = GuestRoot::create_in(scratch, &[])?;
        let args: Vec<String> = BUILD_ARGV.map(String::from).into();
        let state = soulbox_host_api::GuestState::new(GuestConfig {
            args: &args,
            env: &[],
            mounts: &[],
            root: &root.host_path(),
            limits: crate::snapshot_cache::BUILD_LIMITS,
        })?;
        let mut store = crate::snapshot_cache::build_store(&engine, state, settings)?;
        crate::snapshot_cache::build_runtime(scratch)?.block_on(async {
            let instance = linker.instantiate_async(&mut store, &module).await.map_err(|e| RuntimeError::wasm(&e))?;
            let started = async {
                call0(&mut store, &instance, "_initialize").await?;
                init_argv(&mut store, &instance, &args).await?;
                let loaded = eval_named(&mut store, &instance, super::PRELUDE, "<soulbox prelude>").await?;
                eval(&mut store, &instance, super::FLUSH).await?;
                wasmtime::Result::<bool>::Ok(loaded)
            };
            let loaded = started.await.map_err(|e| fail(format!("{e:#}")))?;
            let (stdout, stderr) = (store.data().stdout.take(), store.data().stderr.take());
            if !loaded || !stdout.is_empty() || !stderr.is_empty() {
                let output = String::from_utf8_lossy(if stderr.is_empty() { &stdout } else { &stderr }).into_owned();
                return Err(fail(format!("the prelude did not load cleanly: {output}")));
            }
            wizer
                .snapshot(&context, &mut WasmtimeWizer { store: &mut store, instance })
                .await
                .map_err(|e| fail(format!("{e:#}")))
        })
    }
}
