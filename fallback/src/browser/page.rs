//! One render on a running browser, in a [`Tab`]: a blank page in a browser context of its own
//! (no cookies, storage or cache shared with any other render), sized to the request. The
//! source is loaded, then the screenshot, the PDF when asked, and the DOM after the page's
//! scripts ran are taken. A tab serves one render; [`close`] disposes of its context. Opening
//! one starts a renderer process (300-500 ms on one CPU, more than the rest of a render), which
//! is why a warm browser opens the next tab before it is asked for (`chromium.rs`).
//!
//! The page is ready when its `load` event has fired and the fonts it is still loading are,
//! which the render learns by evaluating a promise in the page (no event subscription); a page
//! that does not get there within [`LOAD_TIMEOUT`] (a script that never yields, say) fails the
//! render with a message saying so.

use super::cdp::{Cdp, CdpError};
use crate::error::ContainerError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::time::Duration;

/// How long a page may take to load.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the browser may take over any other step (a large PDF, say).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Resolves to the page's address once it has loaded and the fonts it is still loading are
/// ready (waiting on `document.fonts.ready` when none is loading would cost a frame).
const WAIT_FOR_LOAD: &str = r#"new Promise(done => {
  const fonts = () => document.fonts && document.fonts.status === 'loading' ? document.fonts.ready : null;
  const ready = () => { const f = fonts(); f ? f.then(() => done(location.href)) : done(location.href); };
  if (document.readyState === 'complete') ready(); else addEventListener('load', ready, { once: true });
})"#;
const OUTER_HTML: &str = "document.documentElement ? document.documentElement.outerHTML : ''";

/// What the browser loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// A URL it navigates to.
    Url(String),
    /// HTML written into a blank page.
    Html(String),
}

/// What a render captured.
#[derive(Debug)]
pub struct Captured {
    /// The viewport, PNG.
    pub png: Vec<u8>,
    /// The page printed to PDF, when asked.
    pub pdf: Option<Vec<u8>>,
    /// The page's address once loaded (after redirects).
    pub location: String,
    /// The DOM after the page's scripts ran.
    pub dom: String,
}

/// A blank page in a browser context of its own, sized, ready for one render.
#[derive(Debug)]
pub struct Tab {
    context: String,
    session: String,
    /// Its viewport, width x height.
    pub size: (u32, u32),
}

/// Opens a tab with a `width` x `height` viewport.
pub async fn open(cdp: &Cdp, width: u32, height: u32) -> Result<Tab, ContainerError> {
    let context =
        cdp.call(None, "Target.createBrowserContext", json!({ "disposeOnDetach": true }), STEP_TIMEOUT).await?;
    let context = string(&context, "browserContextId")?;
    let opened = async {
        let target = json!({ "url": "about:blank", "browserContextId": context });
        let target = cdp.call(None, "Target.createTarget", target, STEP_TIMEOUT).await?;
        let attach = json!({ "targetId": string(&target, "targetId")?, "flatten": true });
        let session = string(&cdp.call(None, "Target.attachToTarget", attach, STEP_TIMEOUT).await?, "sessionId")?;
        let mut tab = Tab { context: context.clone(), session, size: (0, 0) };
        resize(cdp, &mut tab, width, height).await?;
        Ok(tab)
    };
    let opened = opened.await;
    if opened.is_err() {
        dispose(cdp, &context).await;
    }
    opened
}

/// Gives `tab` a `width` x `height` viewport (nothing to do when it has it).
pub async fn resize(cdp: &Cdp, tab: &mut Tab, width: u32, height: u32) -> Result<(), ContainerError> {
    if tab.size != (width, height) {
        let metrics = json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false });
        cdp.call(Some(&tab.session), "Emulation.setDeviceMetricsOverride", metrics, STEP_TIMEOUT).await?;
        tab.size = (width, height);
    }
    Ok(())
}

/// Closes `tab` with its browser context (its cookies, storage and cache go with it).
pub async fn close(cdp: &Cdp, tab: Tab) {
    dispose(cdp, &tab.context).await;
}

async fn dispose(cdp: &Cdp, context: &str) {
    let params = json!({ "browserContextId": context });
    if let Err(error) = cdp.call(None, "Target.disposeBrowserContext", params, STEP_TIMEOUT).await {
        tracing::debug!(%error, "could not dispose of a render's browser context");
    }
}

/// Renders `load` in `tab` (at its size): the screenshot, the PDF when asked, the DOM.
pub async fn capture(cdp: &Cdp, tab: &Tab, load: &Load, pdf: bool) -> Result<Captured, ContainerError> {
    let session = tab.session.as_str();
    let page = |method, params| cdp.call(Some(session), method, params, STEP_TIMEOUT);
    match load {
        Load::Url(url) => {
            let navigated = page("Page.navigate", json!({ "url": url })).await?;
            if let Some(error) = navigated.get("errorText").and_then(Value::as_str).filter(|e| !e.is_empty()) {
                return Err(ContainerError::Rejected(format!("the page did not load: {error} ({url})")));
            }
        }
        Load::Html(html) => {
            let frames = page("Page.getFrameTree", json!({})).await?;
            let frame = frames["frameTree"]["frame"]["id"].as_str().unwrap_or_default().to_owned();
            page("Page.setDocumentContent", json!({ "frameId": frame, "html": html })).await?;
        }
    }
    let waited = cdp.call(Some(session), "Runtime.evaluate", evaluation(WAIT_FOR_LOAD, true), LOAD_TIMEOUT).await;
    let location = match waited {
        Err(CdpError::TimedOut { .. }) => {
            return Err(ContainerError::Rejected(format!(
                "the page did not finish loading within {} s (a script may be keeping it busy)",
                LOAD_TIMEOUT.as_secs()
            )));
        }
        waited => value_of(waited?)?,
    };
    let png = decoded(&page("Page.captureScreenshot", json!({ "format": "png", "optimizeForSpeed": true })).await?)?;
    let pdf = if pdf {
        let printed = page("Page.printToPDF", json!({ "printBackground": true })).await?;
        Some(decoded(&printed)?)
    } else {
        None
    };
    let dom = value_of(page("Runtime.evaluate", evaluation(OUTER_HTML, false)).await?)?;
    Ok(Captured { png, pdf, location, dom })
}

/// `Runtime.evaluate`'s parameters for `expression` (awaited when it is a promise).
fn evaluation(expression: &str, promise: bool) -> Value {
    json!({ "expression": expression, "awaitPromise": promise, "returnByValue": true })
}

/// The string an evaluation returned, or the page's exception as a refusal.
fn value_of(evaluated: Value) -> Result<String, ContainerError> {
    if let Some(exception) = evaluated.get("exceptionDetails") {
        let text = exception["exception"]["description"].as_str().or(exception["text"].as_str()).unwrap_or("an error");
        return Err(ContainerError::Rejected(format!("reading the page failed: {text}")));
    }
    Ok(evaluated["result"]["value"].as_str().unwrap_or_default().to_owned())
}

fn string(value: &Value, field: &str) -> Result<String, ContainerError> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ContainerError::Internal(format!("the browser's answer has no `{field}`: {value}")))
}

fn decoded(value: &Value) -> Result<Vec<u8>, ContainerError> {
    STANDARD
        .decode(string(value, "data")?)
        .map_err(|e| ContainerError::Internal(format!("the browser sent garbled data: {e}")))
}
