//! The only code that touches pingora's `ServerSession`: it turns a session into `http`
//! request parts plus a streaming [`RequestBody`], hands them to the registry core, and
//! streams the core's response back. No body is ever buffered whole here.

use crate::api::{error::ApiError, Body, BodyError, Registry, RequestBody};
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, StatusCode};
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_http::ResponseHeader;
use std::sync::Arc;
use std::time::Instant;

/// The pingora application: one per listener set, sharing the registry core.
pub struct App {
    registry: Arc<Registry>,
    keepalive_secs: u64,
}

impl App {
    pub fn new(registry: Arc<Registry>, keepalive_secs: u64) -> Self {
        Self {
            registry,
            keepalive_secs,
        }
    }
}

#[async_trait]
impl HttpServerApp for App {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "reading request header failed");
                return None;
            }
        }
        let started = Instant::now();
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(self.keepalive_secs));
        }
        let parts = session.req_header().as_owned_parts();
        let client = session
            .client_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();

        let too_large = self
            .registry
            .body_limit(parts.uri.path())
            .zip(content_length(&parts.headers))
            .filter(|(limit, len)| len > limit)
            .map(|(limit, _)| limit);
        let (resp, body_done) = match too_large {
            Some(limit) => {
                let err = ApiError::size_invalid(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body exceeds the {limit}-byte limit for this endpoint"),
                );
                let mut r = err.into_response();
                r.headers_mut().insert(
                    "Docker-Distribution-API-Version",
                    http::HeaderValue::from_static("registry/2.0"),
                );
                (r, false)
            }
            None => {
                let mut body = SessionBody::new(&mut session, &parts.headers);
                let resp = self.registry.handle(&parts, &mut body).await;
                let done = body.done;
                (resp, done)
            }
        };
        let status = resp.status();
        let sent = write_response(&mut session, resp).await;
        let ok = sent.is_ok();
        tracing::info!(
            target: "berth::access",
            method = %parts.method,
            path = %parts.uri.path(),
            status = status.as_u16(),
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            ms = started.elapsed().as_millis() as u64,
            client = %client,
            "request"
        );
        if let Err(e) = sent {
            tracing::debug!(error = %e, "writing response failed");
            return None;
        }
        // A body the handler did not read leaves the connection unusable: close it rather
        // than read an unbounded amount of data nobody wants.
        if !body_done && !session.is_body_done() {
            session.set_keepalive(None);
        }
        if !ok {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, settings)),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "finishing the session failed");
                None
            }
        }
    }
}

/// Streams the request body from the session. `Expect: 100-continue` is answered the first
/// time the handler asks for the body, so a request refused early never uploads its body.
struct SessionBody<'a> {
    session: &'a mut ServerSession,
    expect_continue: bool,
    done: bool,
}

impl<'a> SessionBody<'a> {
    fn new(session: &'a mut ServerSession, headers: &http::HeaderMap) -> Self {
        let expect_continue = headers
            .get(header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        Self {
            session,
            expect_continue,
            done: false,
        }
    }
}

#[async_trait]
impl RequestBody for SessionBody<'_> {
    async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        if self.done {
            return Ok(None);
        }
        if self.expect_continue {
            self.expect_continue = false;
            self.session
                .write_continue_response()
                .await
                .map_err(|e| BodyError(e.to_string()))?;
        }
        match self.session.read_request_body().await {
            Ok(Some(b)) => Ok(Some(b)),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => Err(BodyError(e.to_string())),
        }
    }
}

async fn write_response(
    session: &mut ServerSession,
    resp: http::Response<Body>,
) -> pingora_core::Result<()> {
    let (parts, body) = resp.into_parts();
    let mut header = ResponseHeader::build(parts.status, Some(parts.headers.len()))?;
    for (name, value) in parts.headers.iter() {
        header.append_header(name.clone(), value.clone())?;
    }
    if matches!(body, Body::Full(_)) && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        if let Body::Full(b) = &body {
            header.insert_header(header::CONTENT_LENGTH, b.len().to_string())?;
        }
    }
    session.write_response_header(Box::new(header)).await?;
    match body {
        Body::Empty => session.write_response_body(Bytes::new(), true).await?,
        Body::Full(b) => session.write_response_body(b, true).await?,
        Body::Stream(mut rx) => {
            while let Some(chunk) = rx.recv().await {
                match chunk {
                    Ok(b) => session.write_response_body(b, false).await?,
                    Err(e) => {
                        tracing::error!(error = %e, "reading a blob failed mid-response");
                        return Err(pingora_core::Error::because(
                            pingora_core::ErrorType::ReadError,
                            "blob read failed",
                            e,
                        ));
                    }
                }
            }
            session.write_response_body(Bytes::new(), true).await?;
        }
    }
    Ok(())
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
