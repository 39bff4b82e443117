//! [`Refusal`]: the HTTP answer a middleware gives instead of upgrading.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

/// A status for a [`Refusal`]: an [`http::StatusCode`] or a number (`401`).
pub trait IntoStatusCode {
    /// The status, or `None` when the number is not a valid status code.
    fn into_status_code(self) -> Option<StatusCode>;
}

impl IntoStatusCode for StatusCode {
    fn into_status_code(self) -> Option<StatusCode> {
        Some(self)
    }
}

impl IntoStatusCode for u16 {
    fn into_status_code(self) -> Option<StatusCode> {
        StatusCode::from_u16(self).ok()
    }
}

/// Plain integer literals (`Refusal::json(401, ..)`) are `i32`.
impl IntoStatusCode for i32 {
    fn into_status_code(self) -> Option<StatusCode> {
        u16::try_from(self).ok()?.into_status_code()
    }
}

/// An HTTP answer that refuses the upgrade: no socket is created.
///
/// Build one from a status and a body ([`json`](Self::json), [`text`](Self::text),
/// [`new`](Self::new)), or from anything axum can answer with ([`response`](Self::response));
/// a bare [`StatusCode`] converts with `?` or `.into()`.
///
/// ```
/// use asena_runtime::Refusal;
/// use http::StatusCode;
/// use serde_json::json;
///
/// let a = Refusal::json(401, json!({"error": "Unauthorized"}));
/// let b = Refusal::json(StatusCode::UNAUTHORIZED, json!({"error": "Unauthorized"}));
/// let c = Refusal::response((StatusCode::TOO_MANY_REQUESTS, [("retry-after", "5")], "slow down"));
/// let d: Refusal = StatusCode::FORBIDDEN.into();
/// assert_eq!(a.status(), b.status());
/// assert_eq!(c.headers()["retry-after"], "5");
/// assert_eq!(d.status(), StatusCode::FORBIDDEN);
/// ```
#[derive(Debug)]
pub struct Refusal {
    response: Response,
}

impl Refusal {
    /// A refusal with `status` and an empty body. Statuses that cannot end a request
    /// (invalid ones and `1xx`, which would claim a protocol switch that never happens)
    /// become 500, and the mistake is logged.
    pub fn new(status: impl IntoStatusCode) -> Refusal {
        Refusal::with_body(status, Body::empty(), None)
    }

    /// A refusal with a JSON body (`content-type: application/json`).
    pub fn json(status: impl IntoStatusCode, body: impl serde::Serialize) -> Refusal {
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|error| {
            tracing::error!(target: "asena::middleware", %error, "a refusal's JSON body could not be serialised");
            Vec::new()
        });
        Refusal::with_body(status, Body::from(bytes), Some("application/json"))
    }

    /// A refusal with a plain-text body.
    pub fn text(status: impl IntoStatusCode, body: impl Into<String>) -> Refusal {
        Refusal::with_body(
            status,
            Body::from(body.into()),
            Some("text/plain; charset=utf-8"),
        )
    }

    /// A refusal answered with any axum response (a `(StatusCode, headers, body)` tuple,
    /// `axum::Json`, a `Response`, ...). An informational status becomes 500, as in
    /// [`new`](Self::new).
    pub fn response(response: impl IntoResponse) -> Refusal {
        let mut response = response.into_response();
        if response.status().is_informational() {
            tracing::error!(
                target: "asena::middleware",
                status = %response.status(),
                "a refusal needs a final status (200-999); answering 500"
            );
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        }
        Refusal { response }
    }

    fn with_body(
        status: impl IntoStatusCode,
        body: Body,
        content_type: Option<&'static str>,
    ) -> Refusal {
        let status = status
            .into_status_code()
            .filter(|s| !s.is_informational())
            .unwrap_or_else(|| {
                tracing::error!(
                    target: "asena::middleware",
                    "a refusal needs a final status (200-999); answering 500"
                );
                StatusCode::INTERNAL_SERVER_ERROR
            });
        let mut response = Response::new(body);
        *response.status_mut() = status;
        if let Some(content_type) = content_type {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        Refusal { response }
    }

    /// Sets a response header, replacing an earlier value of the same name (so it can
    /// override the `content-type` of [`json`](Self::json) or [`text`](Self::text)).
    /// Invalid names or values are ignored and logged.
    pub fn with_header(self, name: &str, value: &str) -> Refusal {
        self.header(name, value, false)
    }

    /// Adds a response header, keeping earlier values of the same name (e.g. several
    /// `set-cookie`). Invalid names or values are ignored and logged.
    pub fn append_header(self, name: &str, value: &str) -> Refusal {
        self.header(name, value, true)
    }

    /// Sets a response header, or with `append` adds it; an invalid name or value is
    /// ignored and logged.
    fn header(mut self, name: &str, value: &str, append: bool) -> Refusal {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                let headers = self.response.headers_mut();
                if append {
                    headers.append(n, v);
                } else {
                    headers.insert(n, v);
                }
            }
            _ => {
                tracing::warn!(target: "asena::middleware", name, "ignoring an invalid refusal header")
            }
        }
        self
    }

    /// The response headers set so far.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// Turns the refusal into the response that is sent.
    pub fn into_response(self) -> Response {
        self.response
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.response
    }
}

impl From<StatusCode> for Refusal {
    fn from(status: StatusCode) -> Refusal {
        Refusal::new(status)
    }
}

impl From<Response> for Refusal {
    fn from(response: Response) -> Refusal {
        Refusal::response(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Refusal) -> Vec<u8> {
        axum::body::to_bytes(r.into_response().into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec()
    }

    #[test]
    fn informational_status_is_not_a_refusal() {
        assert_eq!(
            Refusal::new(101).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(Refusal::new(42).status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(Refusal::new(-1).status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(Refusal::new(204).status(), StatusCode::NO_CONTENT);
        assert_eq!(
            Refusal::response(StatusCode::SWITCHING_PROTOCOLS).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn headers_replace_or_append() {
        let r = Refusal::json(429, serde_json::json!({}))
            .with_header("content-type", "application/problem+json")
            .append_header("set-cookie", "a=1")
            .append_header("set-cookie", "b=2")
            .with_header("bad name", "x");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(r.headers().get_all(header::SET_COOKIE).iter().count(), 2);
        assert_eq!(r.headers().len(), 3);
        assert_eq!(body(r).await, b"{}");
    }

    #[tokio::test]
    async fn json_sets_type_and_body() {
        let r = Refusal::json(401, serde_json::json!({"error": "Unauthorized"}));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(body(r).await, br#"{"error":"Unauthorized"}"#);
    }

    #[tokio::test]
    async fn any_axum_response() {
        let r = Refusal::response((
            StatusCode::IM_A_TEAPOT,
            axum::Json(serde_json::json!({"x": 1})),
        ));
        assert_eq!(r.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(body(r).await, br#"{"x":1}"#);
        let r: Refusal = StatusCode::UNAUTHORIZED.into();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
}
