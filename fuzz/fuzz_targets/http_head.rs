//! Fuzzes the HTTP/1.1 request reading of the node's listeners: the bytes go through the same
//! hyper connection settings (`ucm::node::http::http1_reader`) over an in-memory stream.
//!
//! Input: the first byte sets the size of the reads the stream returns (1..=64 bytes, or all
//! at once), the rest is what a client sent.
//!
//! - reading never panics and ends (the stream ends; nothing waits on the 30 s head timeout);
//! - each request reaching the service has a path starting with `/` (or `*`, or none), headers whose
//!   names are tokens, a query the services' form reader takes, and a body no longer than the
//!   input;
//! - the head is read the same whatever the read sizes: the requests seen one byte at a time
//!   and all at once are the same.
#![no_main]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ucm::wire::codec::Form;

/// What the client sent, returned `chunk` bytes per read; what the server writes is dropped.
struct Stream {
    data: Vec<u8>,
    at: usize,
    chunk: usize,
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self
            .chunk
            .min(buf.remaining())
            .min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One request as the service saw it.
type Seen = (String, String, Vec<(String, Vec<u8>)>, Result<Vec<u8>, ()>);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fn serve(data: &[u8], chunk: usize) -> Vec<Seen> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let limit = data.len();
    let log = seen.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            let path = parts.uri.path().to_string();
            // Origin-form and absolute-form give a path from `/`; asterisk-form `*`;
            // authority-form (CONNECT's, accepted for any method) none.
            assert!(
                path.starts_with('/') || path == "*" || path.is_empty(),
                "{path:?}"
            );
            let query = parts.uri.query().unwrap_or("").to_string();
            let _ = Form::parse(query.as_bytes()).get("device");
            let headers: Vec<(String, Vec<u8>)> = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect();
            for (n, _) in &headers {
                assert!(!n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b':'));
            }
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .map_err(|_| ());
            if let Ok(b) = &body {
                assert!(b.len() <= limit);
            }
            log.lock().expect("log").push((
                parts.method.to_string(),
                format!("{path}?{query}"),
                headers,
                body,
            ));
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let stream = Stream {
        data: data.to_vec(),
        at: 0,
        chunk,
    };
    runtime().block_on(async {
        let conn = ucm::node::http::http1_reader(ucm::node::http::HTTP_HEADER_READ_TIMEOUT).serve_connection(TokioIo::new(stream), svc);
        let _ = conn.await;
    });
    let out = seen.lock().expect("log").clone();
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let chunk = match mode % 65 {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let seen = serve(input, chunk);
    if chunk != 1 {
        assert_eq!(serve(input, 1), seen);
    }
});
