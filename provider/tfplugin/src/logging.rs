//! go-hclog JSON logging for `tracing`, and [`Secret`] for values that must
//! never be logged.
//!
//! OpenTofu/Terraform read the plugin's stderr and re-emit go-hclog JSON
//! lines at their level when `TF_LOG`/`TF_LOG_PROVIDER` ask for them. Each
//! event becomes one line:
//! `{"@level":"info","@message":"...","@module":"provider.terraform-provider-waddle","@timestamp":"2024-01-02T15:04:05.123456Z","key":"value"}`.
//! Fields of enclosing spans are included; event fields win on conflicts.

use std::fmt;
use std::io::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The level filter chosen by `TF_LOG_PROVIDER`, else `TF_LOG`.
///
/// `TRACE`/`DEBUG`/`INFO`/`WARN`/`ERROR` (any case), `JSON` = trace, `OFF` or
/// unset = off; an unrecognised value means trace (as Terraform does).
pub fn level_filter(tf_log_provider: Option<&str>, tf_log: Option<&str>) -> LevelFilter {
    let raw = [tf_log_provider, tf_log]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|v| !v.is_empty());
    match raw.map(str::to_ascii_uppercase).as_deref() {
        None | Some("OFF") => LevelFilter::OFF,
        Some("ERROR") => LevelFilter::ERROR,
        Some("WARN") => LevelFilter::WARN,
        Some("INFO") => LevelFilter::INFO,
        Some("DEBUG") => LevelFilter::DEBUG,
        Some(_) => LevelFilter::TRACE,
    }
}

/// The level filter from this process' environment.
pub fn level_filter_from_env() -> LevelFilter {
    let provider = std::env::var("TF_LOG_PROVIDER").ok();
    let core = std::env::var("TF_LOG").ok();
    level_filter(provider.as_deref(), core.as_deref())
}

/// Crates whose own events are capped at WARN: at TRACE they would flood the
/// host with HTTP/2 and TLS frame details.
const NOISY_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "rustls",
    "mio",
];

/// The per-target filter for `level`: everything at `level`, noisy transport
/// crates at most at WARN.
pub fn targets_filter(level: LevelFilter) -> tracing_subscriber::filter::Targets {
    let capped = std::cmp::min(level, LevelFilter::WARN);
    NOISY_TARGETS.iter().fold(
        tracing_subscriber::filter::Targets::new().with_default(level),
        |t, target| t.with_target(*target, capped),
    )
}

/// Installs the go-hclog JSON subscriber on stderr as the global default,
/// with the level from the environment. Does nothing if a global subscriber
/// is already set.
pub fn try_init(module: &str) {
    let layer = HclogLayer::new(module, std::io::stderr)
        .with_filter(targets_filter(level_filter_from_env()));
    let subscriber = tracing_subscriber::registry().with(layer);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// A `tracing` layer writing go-hclog JSON lines to `W`.
#[derive(Debug)]
pub struct HclogLayer<W> {
    module: String,
    writer: W,
}

impl<W> HclogLayer<W> {
    /// A layer for `@module` `module` writing to `writer`.
    pub fn new(module: impl Into<String>, writer: W) -> Self {
        HclogLayer {
            module: module.into(),
            writer,
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Formats a timestamp like go-hclog: RFC 3339 with microseconds, UTC.
pub fn format_timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[derive(Default)]
struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
}

impl<S, W> Layer<S> for HclogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = JsonFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<JsonFields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let line = self.format_event(event, &ctx, time::OffsetDateTime::now_utc());
        let mut w = self.writer.make_writer();
        let _ = w.write_all(line.as_bytes());
    }
}

impl<W> HclogLayer<W> {
    fn format_event<S>(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
        now: time::OffsetDateTime,
    ) -> String
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let mut out = Map::new();
        out.insert(
            "@level".into(),
            Value::from(level_name(event.metadata().level())),
        );
        let message = fields.0.remove("message").unwrap_or(Value::from(""));
        out.insert("@message".into(), message);
        out.insert("@module".into(), Value::from(self.module.as_str()));
        out.insert("@timestamp".into(), Value::from(format_timestamp(now)));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(sf) = span.extensions().get::<JsonFields>() {
                    for (k, v) in &sf.0 {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        for (k, v) in fields.0 {
            if !k.starts_with('@') {
                out.insert(k, v);
            }
        }
        let mut line = Value::Object(out).to_string();
        line.push('\n');
        line
    }
}

/// A value that must never appear in logs or `Debug` output (tokens, keys,
/// passwords). `Debug` and `Display` print `<redacted>`; use
/// [`Secret::expose`] where the real value is needed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    /// The secret value; never pass it to a logging macro.
    pub fn expose(&self) -> &T {
        &self.0
    }
    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn capture(filter: LevelFilter, f: impl FnOnce()) -> Vec<Value> {
        let buf = Buf::default();
        let layer =
            HclogLayer::new("provider.terraform-provider-waddle", buf.clone()).with_filter(filter);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn events_are_hclog_json_lines() {
        let lines = capture(LevelFilter::TRACE, || {
            let span = tracing::info_span!("rpc", tf_rpc = "PlanResourceChange");
            let _g = span.enter();
            tracing::warn!(
                tf_resource_type = "waddle_talos_image",
                count = 3,
                ok = true,
                "planning {}",
                "now"
            );
            tracing::trace!("fine detail");
        });
        assert_eq!(lines.len(), 2);
        let l = &lines[0];
        assert_eq!(l["@level"], "warn");
        assert_eq!(l["@message"], "planning now");
        assert_eq!(l["@module"], "provider.terraform-provider-waddle");
        assert_eq!(l["tf_rpc"], "PlanResourceChange");
        assert_eq!(l["tf_resource_type"], "waddle_talos_image");
        assert_eq!(l["count"], 3);
        assert_eq!(l["ok"], true);
        assert!(l.get("message").is_none());
        let ts = l["@timestamp"].as_str().unwrap();
        let re = regex_like_timestamp(ts);
        assert!(re, "bad timestamp {ts}");
        assert_eq!(lines[1]["@level"], "trace");
    }

    fn regex_like_timestamp(ts: &str) -> bool {
        // YYYY-MM-DDTHH:MM:SS.ffffffZ
        let b = ts.as_bytes();
        b.len() == 27
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'.'
            && b[26] == b'Z'
            && ts[20..26].bytes().all(|c| c.is_ascii_digit())
    }

    #[test]
    fn timestamp_format_matches_go_hclog() {
        let t = time::macros::datetime!(2024-01-02 15:04:05.123456789 UTC);
        assert_eq!(format_timestamp(t), "2024-01-02T15:04:05.123456Z");
        let t = time::macros::datetime!(2024-01-02 16:04:05.000001 +01:00);
        assert_eq!(format_timestamp(t), "2024-01-02T15:04:05.000001Z");
    }

    #[test]
    fn level_filter_follows_tf_log_provider_then_tf_log() {
        assert_eq!(level_filter(None, None), LevelFilter::OFF);
        assert_eq!(level_filter(None, Some("OFF")), LevelFilter::OFF);
        assert_eq!(level_filter(None, Some("debug")), LevelFilter::DEBUG);
        assert_eq!(level_filter(None, Some("JSON")), LevelFilter::TRACE);
        assert_eq!(level_filter(Some("WARN"), Some("TRACE")), LevelFilter::WARN);
        assert_eq!(level_filter(Some(""), Some("INFO")), LevelFilter::INFO);
        assert_eq!(level_filter(None, Some("ERROR")), LevelFilter::ERROR);
        assert_eq!(level_filter(None, Some("bogus")), LevelFilter::TRACE);
    }

    #[test]
    fn level_filter_drops_lower_levels() {
        let lines = capture(LevelFilter::WARN, || {
            tracing::info!("hidden");
            tracing::error!("shown");
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["@level"], "error");
        assert_eq!(lines[0]["@message"], "shown");
    }

    #[test]
    fn transport_crates_are_capped_at_warn() {
        let buf = Buf::default();
        let layer =
            HclogLayer::new("m", buf.clone()).with_filter(targets_filter(LevelFilter::TRACE));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "h2::codec", "frame");
            tracing::warn!(target: "h2::proto", "goaway");
            tracing::trace!(target: "waddle_framework::rpc", "mine");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("frame"), "{text}");
        assert!(text.contains("goaway"), "{text}");
        assert!(text.contains("mine"), "{text}");
    }

    #[test]
    fn secrets_are_redacted_in_logs_and_debug() {
        let token = Secret::new("root@pam!ci=0123-secret".to_string());
        assert_eq!(format!("{token:?}"), "<redacted>");
        assert_eq!(format!("{token}"), "<redacted>");
        assert_eq!(token.expose(), "root@pam!ci=0123-secret");
        let lines = capture(LevelFilter::TRACE, || {
            tracing::info!(api_token = ?token, "configured");
        });
        assert_eq!(lines[0]["api_token"], "<redacted>");
        assert!(!serde_json::to_string(&lines)
            .unwrap()
            .contains("0123-secret"));
    }
}
