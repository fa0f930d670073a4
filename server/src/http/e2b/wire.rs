//! What E2B's wire format needs that SoulBox's does not: its error body, RFC 3339 times, and
//! E2B paths.

use super::HOME;
use crate::http::ApiError;
use crate::http::error::{ErrorCode, ErrorMessage};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// E2B's error: `{"code": <status>, "message": ...}` with that status (for refusals of the E2B
/// surface's own; a handler's [`ApiError`] is reshaped by [`shaped`]).
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (status, Json(json!({ "code": status.as_u16(), "message": message.into() }))).into_response();
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::BAD_GATEWAY => "sandbox_not_open",
        _ => "e2b",
    };
    response.extensions_mut().insert(ErrorCode(code));
    response
}

/// Middleware form of [`shaped`].
pub async fn reshape_errors(response: Response) -> Response {
    shaped(response)
}

/// A response in E2B's error shape: an [`ApiError`]'s response (known by the message it carries
/// in its extensions) gets E2B's body with the same status, headers (`Retry-After`) and
/// metrics code; any other response passes as it is.
pub fn shaped(response: Response) -> Response {
    let Some(ErrorMessage(message)) = response.extensions().get::<ErrorMessage>().cloned() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    let body = json!({ "code": parts.status.as_u16(), "message": message });
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.extensions.remove::<ErrorMessage>();
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// A JSON body that may be empty (E2B's SDK sends none, or `{}`, to some routes): empty is
/// `T::default()`.
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the request body: {e}")))
}

/// `ms` (Unix milliseconds) as RFC 3339 in UTC, to the millisecond: `2026-12-01T06:00:00.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days as i64);
    let (hour, minute, second, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// Now, as [`rfc3339`].
pub fn now() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    rfc3339(ms)
}

/// Year, month, day of the `days`-th day since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// An E2B path as a workspace path: absolute ones as they are, relative ones under
/// [`HOME`] (E2B's working directory), `~` as [`HOME`].
pub fn workspace_path(path: &str) -> String {
    match path {
        "" | "~" => HOME.to_owned(),
        _ if path.starts_with('/') => path.to_owned(),
        _ => match path.strip_prefix("~/") {
            Some(rest) => format!("{HOME}/{rest}"),
            None => format!("{HOME}/{path}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_083_200_123), "2026-12-01T00:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn relative_paths_are_under_the_home() {
        assert_eq!(workspace_path("a.txt"), "/home/user/a.txt");
        assert_eq!(workspace_path("~/d/a.txt"), "/home/user/d/a.txt");
        assert_eq!(workspace_path("/tmp/x"), "/tmp/x");
        assert_eq!(workspace_path(""), "/home/user");
    }
}
