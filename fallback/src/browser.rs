//! The headless browser: Chromium in a container renders a page to PNG (and PDF), and its DOM
//! (after the page's scripts ran) gives the page's title, text and links.
//!
//! One exec runs three headless Chromium invocations (screenshot, PDF when asked, DOM) with a
//! throwaway profile under `/tmp`, prints each result base64-encoded on stdout, and removes
//! its files; HTML given inline arrives on stdin. Chromium runs with `--no-sandbox` (its own
//! sandbox needs privileges the container does not have: the container is the sandbox).

use crate::containers::Containers;
use crate::error::ContainerError;
use crate::exec;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use scraper::{Html, Selector};
use soulbox_engine::process::{Link, MACHINE_WORKSPACE, PageSource, RenderRequest, RenderedPage};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long a whole render may take (three Chromium runs of at most a minute each).
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(200);
/// Most bytes of rendered output read back.
const MAX_RENDER_OUTPUT: usize = 64 << 20;

const SCRIPT: &str = r#"d="$0"; url="$1"; w="$2"; h="$3"; pdf="$4"; html="$5"
mkdir -p "$d" || exit 125
if [ "$html" = 1 ]; then cat > "$d/page.html"; fi
flags="--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --log-level=3 --user-data-dir=$d/profile --window-size=$w,$h"
timeout 60 chromium $flags --screenshot="$d/shot.png" "$url" >/dev/null 2>&1
if [ "$pdf" = 1 ]; then timeout 60 chromium $flags --no-pdf-header-footer --print-to-pdf="$d/page.pdf" "$url" >/dev/null 2>&1; fi
timeout 60 chromium $flags --dump-dom "$url" > "$d/dom.html" 2>/dev/null
for f in shot.png page.pdf dom.html; do printf '%s ' "$f"; if [ -s "$d/$f" ]; then base64 -w0 "$d/$f"; fi; echo; done
rm -rf "$d""#;

/// Renders `request` in `container` (`workspace`: whether the container has a sandbox's
/// workspace, for `path` sources).
pub async fn render(
    containers: &Containers,
    container: &str,
    request: RenderRequest,
    workspace: bool,
) -> Result<RenderedPage, ContainerError> {
    request.validate().map_err(ContainerError::Rejected)?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = format!("/tmp/.soulbox/render-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let (url, html) = match &request.source {
        PageSource::Url(url) => (checked_url(url)?, None),
        PageSource::Path(path) if workspace => (workspace_url(path)?, None),
        PageSource::Path(_) => {
            return Err(ContainerError::Rejected("a `path` source needs a sandbox; give `html` or a `url`".into()));
        }
        PageSource::Html(html) => (format!("file://{dir}/page.html"), Some(html.clone())),
        _ => return Err(ContainerError::Rejected("this page source is not supported".into())),
    };
    let argv = [
        "bash",
        "-c",
        SCRIPT,
        &dir,
        &url,
        &request.width.to_string(),
        &request.height.to_string(),
        if request.pdf { "1" } else { "0" },
        if html.is_some() { "1" } else { "0" },
    ]
    .map(str::to_owned)
    .to_vec();
    let started = exec::start_argv(&containers.docker, container, argv, vec![], None, false).await?;
    let exec::Started { mut output, mut input, .. } = started;
    if let Some(html) = html {
        input.write_all(html.as_bytes()).await.map_err(|e| ContainerError::io("sending the page", e))?;
    }
    let _ = input.shutdown().await;
    let mut stdout = Vec::new();
    let read = async {
        while let Some(chunk) = output.next().await {
            if let Ok(bollard::container::LogOutput::StdOut { message }) = chunk {
                stdout.extend_from_slice(&message);
                if stdout.len() > MAX_RENDER_OUTPUT {
                    break;
                }
            }
        }
    };
    if tokio::time::timeout(RENDER_TIMEOUT, read).await.is_err() {
        return Err(ContainerError::Internal(format!("the page did not render within {} s", RENDER_TIMEOUT.as_secs())));
    }
    page(&String::from_utf8_lossy(&stdout), &url, request.pdf)
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

/// Reads the script's output (`name base64` lines) into a page.
fn page(stdout: &str, url: &str, pdf: bool) -> Result<RenderedPage, ContainerError> {
    let mut parts = std::collections::HashMap::new();
    for line in stdout.lines() {
        if let Some((name, data)) = line.split_once(' ')
            && !data.is_empty()
        {
            let bytes = STANDARD.decode(data).map_err(|e| ContainerError::Rejected(format!("garbled {name}: {e}")))?;
            parts.insert(name.to_owned(), bytes);
        }
    }
    let png = parts.remove("shot.png").ok_or_else(|| {
        ContainerError::Rejected(
            "the browser produced no screenshot: the page did not load (is the URL reachable?)".into(),
        )
    })?;
    let pdf = if pdf {
        Some(parts.remove("page.pdf").ok_or_else(|| ContainerError::Rejected("the browser produced no PDF".into()))?)
    } else {
        None
    };
    let dom = String::from_utf8_lossy(&parts.remove("dom.html").unwrap_or_default()).into_owned();
    let (title, text, links) = read_dom(&dom, url);
    Ok(RenderedPage { png, pdf, title, text, links })
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
        assert!(page("shot.png \n", "x", false).is_err(), "no screenshot is an error, not an empty PNG");
    }
}
