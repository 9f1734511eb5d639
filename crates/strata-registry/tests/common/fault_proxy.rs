//! A loopback HTTP proxy in front of a registry that injects faults by
//! rule: dropped connections, 5xx, 429 with Retry-After, truncated bodies,
//! lying Content-Length, wrong blob bytes (on the way down or up) and
//! stalls. Every request it saw is recorded.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::{Request, Response};

/// What to do to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// Close the connection without an answer.
    Drop,
    /// Answer this status (500, 503, ...) without asking the registry.
    Status(u16),
    /// 429 with `Retry-After: n`.
    TooMany(u64),
    /// The body breaks off halfway (Content-Length kept, connection closed).
    Truncate,
    /// Content-Length says 100 bytes more than the body has.
    LongLength,
    /// Content-Length says 100 bytes less, and the body stops there.
    ShortLength,
    /// The answer's body has one byte changed (same size): a wrong blob.
    WrongBlob,
    /// The request's body has one byte changed on its way up.
    CorruptUpload,
    /// Wait this long before answering.
    StallHead(Duration),
    /// Send half the body, wait this long, send the rest.
    StallBody(Duration),
}

/// A fault for requests with `method` whose path contains `path`, the
/// first `times` of them (`usize::MAX`: all).
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub path: String,
    pub fault: Inject,
    pub times: usize,
}

impl Rule {
    pub fn new(method: &'static str, path: impl Into<String>, fault: Inject, times: usize) -> Rule {
        Rule {
            method,
            path: path.into(),
            fault,
            times,
        }
    }
}

/// A request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub fault: Option<Inject>,
}

struct State {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    http: reqwest::Client,
}

/// The proxy; runs until the test's runtime ends.
pub struct FaultProxy {
    pub addr: String,
    state: Arc<State>,
}

impl FaultProxy {
    /// Listen on a free loopback port, forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let state = Arc::new(State {
            upstream: upstream.to_owned(),
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        FaultProxy { addr, state }
    }

    /// Replace the rules.
    pub fn set(&self, rules: Vec<Rule>) {
        *self.state.rules.lock().unwrap() = rules;
    }

    /// No more faults.
    pub fn heal(&self) {
        self.set(Vec::new());
    }

    /// The requests seen since the last call.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.state.seen.lock().unwrap())
    }

    /// Whether any rule has faults left to inject.
    pub fn pending(&self) -> bool {
        self.state.rules.lock().unwrap().iter().any(|r| r.times > 0)
    }
}

fn pick(st: &State, method: &str, path: &str) -> Option<Inject> {
    let mut rules = st.rules.lock().unwrap();
    let r = rules
        .iter_mut()
        .find(|r| r.times > 0 && r.method == method && path.contains(&r.path))?;
    if r.times != usize::MAX {
        r.times -= 1;
    }
    Some(r.fault)
}

type Reply = Result<Response<Body>, std::io::Error>;

/// `data`, then (after a pause, so it reaches the client first) a broken
/// connection.
fn then_break(data: Bytes, why: &'static str) -> Body {
    Body::from_stream(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(data) }).chain(
            futures_util::stream::once(async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                Err(std::io::Error::other(why))
            }),
        ),
    )
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Reply {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let fault = pick(&st, &method, &path);
    st.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        range: req
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        fault,
    });
    match fault {
        Some(Inject::Drop) => return Err(std::io::Error::other("injected: connection dropped")),
        Some(Inject::Status(s)) => {
            let body = format!(r#"{{"errors":[{{"code":"UNKNOWN","message":"injected {s}"}}]}}"#);
            return Ok(Response::builder()
                .status(s)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap());
        }
        Some(Inject::TooMany(n)) => {
            return Ok(Response::builder()
                .status(429)
                .header("retry-after", n.to_string())
                .header("content-type", "application/json")
                .body(Body::from(
                    r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected 429"}]}"#,
                ))
                .unwrap());
        }
        Some(Inject::StallHead(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    // Forward, keeping the Host the client used (so absolute Locations
    // point back at the proxy).
    let url = format!(
        "http://{}{}",
        st.upstream,
        req.uri()
            .path_and_query()
            .map(|x| x.as_str())
            .unwrap_or("/")
    );
    let mut rb = st.http.request(req.method().clone(), url);
    for (k, v) in req.headers() {
        if k == "connection" || k == "transfer-encoding" {
            continue;
        }
        rb = rb.header(k, v);
    }
    let corrupt = fault == Some(Inject::CorruptUpload);
    let mut first = true;
    let up = Body::new(req.into_body()).into_data_stream().map(move |c| {
        c.map(|b| {
            if corrupt && first && !b.is_empty() {
                first = false;
                let mut v = b.to_vec();
                v[0] ^= 0xff;
                Bytes::from(v)
            } else {
                b
            }
        })
        .map_err(std::io::Error::other)
    });
    let resp = rb
        .body(reqwest::Body::wrap_stream(up))
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let mut out = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if k == "connection" || k == "transfer-encoding" {
            continue;
        }
        if k == "content-length"
            && matches!(fault, Some(Inject::LongLength) | Some(Inject::ShortLength))
        {
            continue;
        }
        out = out.header(k, v);
    }
    let body_faults = matches!(
        fault,
        Some(
            Inject::Truncate
                | Inject::LongLength
                | Inject::ShortLength
                | Inject::WrongBlob
                | Inject::StallBody(_)
        )
    );
    if !body_faults {
        return Ok(out.body(Body::from_stream(resp.bytes_stream())).unwrap());
    }
    let full = resp.bytes().await.map_err(std::io::Error::other)?;
    let n = full.len();
    let body = match fault {
        Some(Inject::Truncate) => then_break(full.slice(..n / 2), "injected: body cut off"),
        Some(Inject::LongLength) => {
            out = out.header("content-length", (n + 100).to_string());
            then_break(full.clone(), "injected: body shorter than announced")
        }
        Some(Inject::ShortLength) => {
            let short = n.saturating_sub(100);
            out = out.header("content-length", short.to_string());
            Body::from(full.slice(..short))
        }
        Some(Inject::WrongBlob) => {
            let mut v = full.to_vec();
            if let Some(b) = v.get_mut(n / 2) {
                *b ^= 0xff;
            }
            Body::from(v)
        }
        Some(Inject::StallBody(d)) => {
            let (a, b) = (full.slice(..n / 2), full.slice(n / 2..));
            Body::from_stream(
                futures_util::stream::once(async move { Ok::<_, Infallible>(a) }).chain(
                    futures_util::stream::once(async move {
                        tokio::time::sleep(d).await;
                        Ok::<_, Infallible>(b)
                    }),
                ),
            )
        }
        _ => Body::from(full),
    };
    Ok(out.body(body).unwrap())
}
