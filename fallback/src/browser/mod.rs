//! The headless browser: Chromium in a container renders a page to PNG (and PDF), and its DOM
//! (after the page's scripts ran) gives the page's title, text and links.
//!
//! A sandbox keeps one browser warm in its container ([`WarmBrowser`]): launched on its first
//! render, driven over the DevTools protocol ([`cdp`], the pipe transport through the exec's
//! stdin and stdout, so it needs no network), reused by every later render, each in a tab of a
//! browser context of its own (nothing shared between renders but the process), the next one
//! opened in the background as soon as a render ends. A browser that stops answering is killed
//! and the next render launches another. A one-shot render ([`render_once`]) launches a
//! browser in a container used once.
//!
//! - [`chromium`]: launching a browser in a container, its tab opened in advance, killing it.
//! - [`page`]: one render over a running browser.

pub mod cdp;
pub mod chromium;
pub mod page;

use crate::containers::Containers;
use crate::error::ContainerError;
use chromium::Chromium;
use page::Load;
use scraper::{Html, Selector};
use soulbox_engine::process::{Link, MACHINE_WORKSPACE, PageSource, RenderRequest, RenderedPage};
use std::sync::Arc;
use std::time::Duration;

/// How long a whole render may take, launching the browser included (each step has its own,
/// shorter limit; this is the backstop).
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(180);

/// A sandbox's browser, launched in its container on the first render and kept for the next.
#[derive(Debug, Default)]
pub struct WarmBrowser {
    current: tokio::sync::Mutex<Option<Arc<Chromium>>>,
}

impl WarmBrowser {
    /// Renders `request` with the browser in `container` (launched if it has none yet, or its
    /// last one died); `path` sources are files of the sandbox's workspace.
    pub async fn render(
        &self,
        containers: &Containers,
        container: &str,
        request: RenderRequest,
    ) -> Result<RenderedPage, ContainerError> {
        let load = load_of(&request, true)?;
        let rendering = async {
            let (browser, launched) = self.browser(containers, container).await?;
            match render_on(&browser, &load, &request, true).await {
                Err(error) if !browser.answers().await => {
                    self.forget(containers, &browser).await;
                    if launched {
                        return Err(error);
                    }
                    // It died since the last render (killed, out of memory): once more on a new one.
                    tracing::info!(%error, "the sandbox's browser stopped answering; starting another");
                    let (browser, _) = self.browser(containers, container).await?;
                    render_on(&browser, &load, &request, true).await
                }
                rendered => rendered,
            }
        };
        within_time(rendering).await
    }

    /// Kills `browser` and forgets it, unless another has taken its place already.
    async fn forget(&self, containers: &Containers, browser: &Arc<Chromium>) {
        browser.kill(&containers.docker).await;
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|held| Arc::ptr_eq(held, browser)) {
            *current = None;
        }
    }

    /// The live browser of `container`, launched when there is none (then `true`).
    async fn browser(&self, containers: &Containers, container: &str) -> Result<(Arc<Chromium>, bool), ContainerError> {
        let mut current = self.current.lock().await;
        if let Some(browser) = current.as_ref()
            && browser.container == container
            && browser.cdp.is_open()
        {
            return Ok((Arc::clone(browser), false));
        }
        let browser = Arc::new(Chromium::launch(&containers.docker, container).await?);
        *current = Some(Arc::clone(&browser));
        Ok((browser, true))
    }
}

/// Renders `request` once in `container` (one used only for this: the browser goes with it).
/// There is no workspace: `path` sources are refused.
pub async fn render_once(
    containers: &Containers,
    container: &str,
    request: RenderRequest,
) -> Result<RenderedPage, ContainerError> {
    let load = load_of(&request, false)?;
    within_time(async {
        let browser = Arc::new(Chromium::launch(&containers.docker, container).await?);
        render_on(&browser, &load, &request, false).await
    })
    .await
}

async fn within_time(
    rendering: impl Future<Output = Result<RenderedPage, ContainerError>>,
) -> Result<RenderedPage, ContainerError> {
    tokio::time::timeout(RENDER_TIMEOUT, rendering).await.unwrap_or_else(|_| {
        Err(ContainerError::Rejected(format!("the page did not render within {} s", RENDER_TIMEOUT.as_secs())))
    })
}

/// Renders on `browser`; with `keep_warm`, the tab is recycled into the next render's.
async fn render_on(
    browser: &Arc<Chromium>,
    load: &Load,
    request: &RenderRequest,
    keep_warm: bool,
) -> Result<RenderedPage, ContainerError> {
    let tab = browser.tab(request.width, request.height).await?;
    let captured = page::capture(&browser.cdp, &tab, load, request.pdf).await;
    if keep_warm {
        browser.recycle(tab);
    }
    let captured = captured?;
    let (title, text, links) = read_dom(&captured.dom, &captured.location);
    Ok(RenderedPage { png: captured.png, pdf: captured.pdf, title, text, links })
}

/// What the browser loads for `request` (`workspace`: whether `path` sources have one).
fn load_of(request: &RenderRequest, workspace: bool) -> Result<Load, ContainerError> {
    request.validate().map_err(ContainerError::Rejected)?;
    match &request.source {
        PageSource::Url(url) => Ok(Load::Url(checked_url(url)?)),
        PageSource::Path(path) if workspace => Ok(Load::Url(workspace_url(path)?)),
        PageSource::Path(_) => {
            Err(ContainerError::Rejected("a `path` source needs a sandbox; give `html` or a `url`".into()))
        }
        PageSource::Html(html) => Ok(Load::Html(html.clone())),
        _ => Err(ContainerError::Rejected("this page source is not supported".into())),
    }
}

/// A URL the browser may load: http(s), file or data.
fn checked_url(url: &str) -> Result<String, ContainerError> {
    let parsed = url::Url::parse(url).map_err(|e| ContainerError::Rejected(format!("invalid URL `{url}`: {e}")))?;
    match parsed.scheme() {
        "http" | "https" | "file" | "data" => Ok(parsed.to_string()),
        other => Err(ContainerError::Rejected(format!("cannot render `{other}:` URLs; use http, https, file or data"))),
    }
}

/// The `file://` URL of a workspace path (`/report.html`), refusing paths that climb out.
fn workspace_url(path: &str) -> Result<String, ContainerError> {
    let relative = path.trim_start_matches('/');
    let plain = !relative.is_empty() && relative.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
    if !plain || relative.contains('\0') {
        return Err(ContainerError::Rejected(format!("invalid workspace path `{path}`")));
    }
    let url = url::Url::from_file_path(format!("{MACHINE_WORKSPACE}/{relative}"))
        .map_err(|()| ContainerError::Rejected(format!("invalid workspace path `{path}`")))?;
    Ok(url.to_string())
}

/// The title, visible text and links of a DOM; links are made absolute against `base` for
/// web and workspace pages.
fn read_dom(dom: &str, base: &str) -> (String, String, Vec<Link>) {
    let document = Html::parse_document(dom);
    let select = |css: &str| Selector::parse(css).expect("a valid selector");
    let title =
        document.select(&select("title")).next().map(|t| collapse(&t.text().collect::<String>())).unwrap_or_default();
    let hidden = ["script", "style", "noscript", "template", "head"];
    let mut text = String::new();
    for node in document.root_element().descendants() {
        let Some(piece) = node.value().as_text() else { continue };
        let shown = !node.ancestors().any(|a| a.value().as_element().is_some_and(|e| hidden.contains(&e.name())));
        if shown && !piece.trim().is_empty() {
            text.push_str(piece.trim());
            text.push('\n');
        }
    }
    let base = url::Url::parse(base).ok().filter(|b| b.scheme() != "file" || b.path().starts_with(MACHINE_WORKSPACE));
    let links = document
        .select(&select("a[href]"))
        .filter_map(|a| {
            let href = a.value().attr("href")?;
            let href = base.as_ref().and_then(|b| b.join(href).ok()).map_or_else(|| href.to_owned(), |u| u.to_string());
            Some(Link { href, text: collapse(&a.text().collect::<String>()) })
        })
        .collect();
    (title, text.trim_end().to_owned(), links)
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_title_text_and_links_from_the_dom() {
        let dom = r#"<html><head><title> Report </title><style>p{}</style></head><body>
            <h1>Sales</h1><script>var x = "hidden";</script><p>Up <b>3%</b></p>
            <a href="/next">Next  page</a><a href="https://example.com/x">Out</a></body></html>"#;
        let (title, text, links) = read_dom(dom, "https://site.test/a/b.html");
        assert_eq!(title, "Report");
        assert_eq!(text, "Sales\nUp\n3%\nNext  page\nOut");
        assert_eq!(links[0], Link { href: "https://site.test/next".into(), text: "Next page".into() });
        assert_eq!(links[1].href, "https://example.com/x");
    }

    #[test]
    fn sources_are_checked() {
        assert_eq!(workspace_url("/out/report.html").unwrap(), "file:///workspace/out/report.html");
        assert!(workspace_url("/../etc/passwd").is_err());
        assert!(workspace_url("").is_err());
        assert!(checked_url("javascript:alert(1)").is_err());
        assert!(checked_url("https://example.com").is_ok());
    }
}
