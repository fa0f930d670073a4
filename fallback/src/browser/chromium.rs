//! [`Chromium`]: one headless Chromium started in a container, driven over its DevTools pipe.
//!
//! The launch script records the browser's pid (to kill its process group when it stops
//! answering), gives it a profile under the container's `/tmp`, and hands the exec's stdin and
//! stdout to Chromium as fds 3 and 4 (`--remote-debugging-pipe`); its own stdout goes nowhere
//! and its stderr stays on the exec's, where [`Cdp`] keeps the end of it. Chromium runs with
//! `--no-sandbox`: its sandbox needs privileges the container does not have (the container is
//! the sandbox). The browser is ready when it answers `Browser.getVersion`.

use super::cdp::{Cdp, CdpError};
use super::page::{self, Tab};
use crate::docker::DockerEngine;
use crate::error::ContainerError;
use crate::exec;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a starting browser may take to answer its first call.
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// `$0` the browser's directory under `/tmp/.soulbox`, then Chromium's flags.
const LAUNCH: &str = r#"d="$0"
mkdir -p "$d" && echo $$ > "$d.pid" || exit 125
exec chromium "$@" --user-data-dir="$d/profile" about:blank 3<&0 4>&1 </dev/null >/dev/null"#;

/// Chromium's flags: headless, no first-run work or background traffic, shared memory in
/// `/tmp` (a container's `/dev/shm` is small), errors only on stderr, and, as Puppeteer
/// launches it, no throttling of pages it considers in the background (a headless page is never
/// in front).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--remote-debugging-pipe",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-ipc-flooding-protection",
    "--disable-hang-monitor",
    "--disable-features=Translate,BackForwardCache,MediaRouter,OptimizationHints",
    "--log-level=2",
];

/// A running browser in a container.
#[derive(Debug)]
pub struct Chromium {
    /// The container it runs in.
    pub container: String,
    /// Its DevTools connection.
    pub cdp: Cdp,
    /// Where its launcher recorded its pid (inside the container).
    pid_file: String,
    /// A tab opened in advance for the next render; locked while it is being opened, so a
    /// render that comes meanwhile waits for it rather than opening a second one at once.
    spare: Arc<tokio::sync::Mutex<Option<Tab>>>,
}

impl Chromium {
    /// Starts a browser in `container` and waits until it answers.
    pub async fn launch(docker: &DockerEngine, container: &str) -> Result<Self, ContainerError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = format!("/tmp/.soulbox/browser-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let mut argv = vec!["sh".to_owned(), "-c".to_owned(), LAUNCH.to_owned(), dir.clone()];
        argv.extend(FLAGS.iter().map(|flag| (*flag).to_owned()));
        let started = exec::start_argv(docker, container, argv, vec![], None, false).await?;
        let browser = Chromium {
            container: container.to_owned(),
            cdp: Cdp::new(started.input, started.output),
            pid_file: format!("{dir}.pid"),
            spare: Arc::default(),
        };
        match browser.cdp.call(None, "Browser.getVersion", json!({}), LAUNCH_TIMEOUT).await {
            Ok(version) => {
                tracing::debug!(product = %version["product"].as_str().unwrap_or("?"), "browser started");
                Ok(browser)
            }
            Err(error) => {
                browser.kill(docker).await;
                Err(ContainerError::Rejected(format!("the browser could not start: {error}")))
            }
        }
    }

    /// A tab for one render at `width` x `height`: the one opened in advance when there is one.
    pub async fn tab(&self, width: u32, height: u32) -> Result<Tab, ContainerError> {
        let spare = self.spare.lock().await.take();
        let Some(mut tab) = spare else { return page::open(&self.cdp, width, height).await };
        match page::resize(&self.cdp, &mut tab, width, height).await {
            Ok(()) => Ok(tab),
            Err(error) => {
                page::close(&self.cdp, tab).await;
                Err(error)
            }
        }
    }

    /// Opens the next render's tab at `used`'s size, then closes `used`, in the background. A
    /// render that comes while the tab is being opened waits for it rather than opening
    /// another at the same time (which would share the container's CPU three ways).
    pub fn recycle(self: &Arc<Self>, used: Tab) {
        let browser = Arc::clone(self);
        // Taken now, before the next render can ask for it.
        let spare = Arc::clone(&self.spare).try_lock_owned();
        tokio::spawn(async move {
            if let Ok(mut spare) = spare
                && spare.is_none()
                && browser.cdp.is_open()
            {
                match page::open(&browser.cdp, used.size.0, used.size.1).await {
                    Ok(tab) => *spare = Some(tab),
                    Err(error) => tracing::debug!(%error, "could not open a tab in advance"),
                }
            }
            page::close(&browser.cdp, used).await;
        });
    }

    /// Whether it still answers quickly (a page may have hung only its own renderer).
    pub async fn answers(&self) -> bool {
        self.cdp.is_open() && self.cdp.call(None, "Browser.getVersion", json!({}), Duration::from_secs(5)).await.is_ok()
    }

    /// Kills the browser and everything it started.
    pub async fn kill(&self, docker: &DockerEngine) {
        if let Err(error) = exec::kill_group(docker, &self.container, &self.pid_file).await {
            tracing::debug!(%error, "could not kill a browser (its container may be gone)");
        }
    }
}

impl From<CdpError> for ContainerError {
    fn from(error: CdpError) -> Self {
        match error {
            CdpError::Refused { .. } => ContainerError::Rejected(error.to_string()),
            CdpError::Exited(_) => ContainerError::Rejected(format!(
                "{error} (a page can make it run out of memory; the next render starts another)"
            )),
            CdpError::TimedOut { .. } | CdpError::Io(_) => ContainerError::Internal(error.to_string()),
        }
    }
}
