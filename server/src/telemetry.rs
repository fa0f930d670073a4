//! Traces over OTLP: when `monitoring.otlp_endpoint` (or OpenTelemetry's own
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names a collector,
//! `soulbox serve` exports its own `tracing` spans at `info` and above (each request's span,
//! and the engine's execution, sandbox and kernel spans beneath it) as OpenTelemetry spans of
//! service `soulbox`, with the node's name as `service.instance.id`.
//!
//! Trace context (W3C `traceparent`): a request that carries one makes its request span a
//! child of the caller's span ([`parent_of`]); a request a node forwards to another carries
//! the forwarding span's ([`inject`]), so one trace holds both nodes' spans.
//!
//! Exporting never holds a request: the SDK's batch processor queues spans (a bounded queue;
//! when it is full, spans are dropped and counted by the SDK) and uploads them from a thread
//! of its own, in OTLP's HTTP/protobuf encoding, through [`OtlpClient`], which runs each upload
//! on the server's tokio runtime with [`UPLOAD_TIMEOUT`]. Only SoulBox's own crates' spans are
//! exported, so an upload never traces itself.

use axum::body::Bytes;
use axum::http::{self, HeaderMap};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, Registry};

/// The service name spans carry.
const SERVICE_NAME: &str = "soulbox";
/// The longest one upload to the collector may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The path OTLP/HTTP receives traces at, under the collector's base URL.
const TRACES_PATH: &str = "/v1/traces";
/// What is exported: SoulBox's own spans and events at `info` and above (not its libraries',
/// such as WASI's span per host call, nor the HTTP clients' that upload the traces).
const EXPORTED: &str = "soulbox=info,soulbox_engine=info,soulbox_runtimes_wasm=info,soulbox_fallback=info,\
                        soulbox_host_api=info";
/// The environment variables OpenTelemetry's exporter reads a collector's address from.
const ENDPOINT_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// Why traces cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The exporter could not be built (a bad endpoint, usually).
    #[error("cannot export traces over OTLP: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The exporter of a serving process; [`Exporter::shutdown`] sends what is queued.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Exports every span still queued, then stops (call it before the runtime ends).
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("soulbox: traces still queued could not be exported: {error}");
        }
    }
}

/// Whether traces are to be exported: `endpoint` is configured, or OpenTelemetry's variables
/// name a collector.
pub fn wanted(endpoint: Option<&str>) -> bool {
    endpoint.is_some() || ENDPOINT_VARIABLES.iter().any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// The layer exporting spans to the collector at `endpoint` (its base URL; else the one
/// OpenTelemetry's variables name) as node `node`, with the exporter that owns it. Uploads run
/// on `runtime`.
pub fn layer(
    endpoint: Option<&str>,
    node: &str,
    runtime: tokio::runtime::Handle,
) -> Result<(Box<dyn Layer<Registry> + Send + Sync>, Exporter), TelemetryError> {
    let client = OtlpClient { client: upload_client(), runtime };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(client)
        .with_timeout(UPLOAD_TIMEOUT);
    if let Some(base) = endpoint {
        exporter = exporter.with_endpoint(format!("{}{TRACES_PATH}", base.trim_end_matches('/')));
    }
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attribute(opentelemetry::KeyValue::new("service.instance.id", node.to_owned()))
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter.build()?).with_resource(resource).build();
    let tracer = provider.tracer(SERVICE_NAME);
    let filter = tracing_subscriber::EnvFilter::new(EXPORTED);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter).boxed();
    Ok((layer, Exporter { provider }))
}

/// The trace context a request's headers carry (`traceparent`, `tracestate`), to make `span`
/// its child; nothing happens when they carry none or traces are not exported.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when no OpenTelemetry layer is installed: then there is no trace to join.
    let _ = span.set_parent(parent);
}

/// Adds the current span's trace context to `headers` (a request to another node), when
/// traces are exported.
pub fn inject(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// The client uploads go through: no proxy from the environment, no redirects.
fn upload_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(UPLOAD_TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client with these settings builds")
}

/// OpenTelemetry's HTTP client trait over this crate's reqwest, running each upload on the
/// server's runtime (the SDK's batch thread drives the future without one).
#[derive(Debug)]
struct OtlpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let client = self.client.clone();
        let upload = async move {
            let sent = client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send();
            let response = sent.await?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        };
        self.runtime.spawn(upload).await?
    }
}
