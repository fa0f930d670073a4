//! Container helpers for the integration tests: a container backend on the machine's real
//! Docker engine (the images built by `scripts/build-images.sh`), beside the shared
//! WebAssembly backend, that removes its containers when dropped, even after a failure.

use soulbox_engine::Engine;
use soulbox_fallback::confinement::INSTANCE_LABEL;
use soulbox_fallback::{ContainerBackend, ContainerConfig};
use std::process::Command;

/// A container backend for one test.
#[derive(Debug)]
pub struct Containers {
    /// The backend.
    pub backend: ContainerBackend,
    /// WebAssembly first, then containers: the production routing.
    pub engine: Engine,
}

impl Containers {
    /// Opens a backend with `config` (its state directory in the system temp dir).
    pub async fn start(config: ContainerConfig) -> Containers {
        let backend = ContainerBackend::start(config).await.expect("the container backend opens");
        let engine = Engine::builder().backend(crate::wasm_backend().clone()).backend(backend.clone()).build();
        Containers { backend, engine }
    }

    /// Opens a backend with the defaults and a pool of one.
    pub async fn default_pool() -> Containers {
        Containers::start(ContainerConfig { pool_size: 1, ..ContainerConfig::default() }).await
    }

    /// Shuts the backend down and asserts none of its containers is left.
    pub async fn finish(self) {
        self.backend.shutdown().await;
        assert_eq!(leftovers(self.backend.instance()), Vec::<String>::new(), "containers left behind");
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        // After a failed test: remove what is left, synchronously (no runtime to await in).
        for id in leftovers(self.backend.instance()) {
            let _ = Command::new("timeout").args(["20", "docker", "rm", "-f", &id]).output();
        }
    }
}

/// Containers (running or not) labelled with this backend instance.
pub fn leftovers(instance: &str) -> Vec<String> {
    let filter = format!("label={INSTANCE_LABEL}={instance}");
    let out = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output().expect("the docker CLI runs");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}
