//! The HTTP a phone speaks as a client (configuration files, the authentication URL, the
//! services menu, pushed URLs). Its codecs (percent-encoding, form bodies, HTTP Basic
//! credentials) are in [`crate::wire::codec`].
//!
//! The client is deliberately minimal: `GET` over HTTP/1.1 with `Connection: close`, from the
//! phone's own address, bounded in time and size. HTTPS is not supported (the phone uses the
//! plain-HTTP URLs of its configuration file).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Largest response body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// A response to a GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("not an http:// URL: {0:?}")]
    BadUrl(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("{0} timed out")]
    Timeout(String),
    #[error("I/O error talking to {0}: {1}")]
    Io(String, String),
    #[error("malformed HTTP response from {0}: {1}")]
    Malformed(String, String),
    #[error("response from {0} exceeds {MAX_BODY} bytes")]
    TooLarge(String),
}

/// The parts of an `http://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// As written, for the Host header (`host` or `host:port`).
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, HttpError> {
        let bad = || HttpError::BadUrl(url.to_string());
        let scheme_len = "http://".len();
        let scheme = url.get(..scheme_len).ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("http://") {
            return Err(bad());
        }
        let rest = url.get(scheme_len..).ok_or_else(bad)?;
        let (authority, target) = match rest.find(['/', '?', '#']) {
            Some(i) => (
                rest.get(..i).unwrap_or(""),
                rest.get(i..).unwrap_or("/").to_string(),
            ),
            None => (rest, "/".to_string()),
        };
        let target = target.split('#').next().unwrap_or("").to_string();
        let target = if target.starts_with('/') {
            target
        } else {
            format!("/{target}")
        };
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 80,
                None => return Err(bad()),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() || target.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(HttpUrl {
            authority: authority.to_string(),
            host,
            port,
            target,
        })
    }
}

/// `GET url` from `local_ip` (when given and of the server's family), with `headers`, the
/// whole exchange bounded by `timeout`.
pub async fn get(
    url: &str,
    local_ip: Option<IpAddr>,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let u = HttpUrl::parse(url)?;
    match tokio::time::timeout(timeout, get_inner(&u, local_ip, headers)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout(format!("GET {url}"))),
    }
}

async fn get_inner(
    u: &HttpUrl,
    local_ip: Option<IpAddr>,
    headers: &[(&str, &str)],
) -> Result<HttpResponse, HttpError> {
    let who = u.authority.clone();
    let addr: SocketAddr = match u.host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, u.port),
        Err(_) => tokio::net::lookup_host((u.host.as_str(), u.port))
            .await
            .map_err(|_| HttpError::Resolve(u.host.clone()))?
            .next()
            .ok_or_else(|| HttpError::Resolve(u.host.clone()))?,
    };
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| HttpError::Connect(who.clone(), e.to_string()))?;
    if let Some(ip) = local_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        sock.bind(SocketAddr::new(ip, 0))
            .map_err(|e| HttpError::Connect(who.clone(), format!("binding {ip}: {e}")))?;
    }
    let mut stream = sock
        .connect(addr)
        .await
        .map_err(|e| HttpError::Connect(who.clone(), e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: */*\r\n",
        u.target, u.authority
    );
    for (n, v) in headers {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        req.push_str(&format!("{}: {}\r\n", clean(n), clean(v)));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| HttpError::Io(who.clone(), e.to_string()))?;
    let mut raw = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16384];
    // Bounded: at most MAX_BODY + 64 KiB of headers, then an error.
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| HttpError::Io(who.clone(), e.to_string()))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if raw.len() > MAX_BODY + 65_536 {
            return Err(HttpError::TooLarge(who));
        }
        if let Some(done) = complete_length(&raw) {
            raw.truncate(done);
            break;
        }
    }
    parse_response(&raw).map_err(|e| HttpError::Malformed(who, e))
}

/// When the buffered bytes hold a complete response framed by Content-Length, its length.
fn complete_length(raw: &[u8]) -> Option<usize> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(raw.get(..end)?);
    let cl = head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    })?;
    let total = end.checked_add(cl)?;
    (raw.len() >= total).then_some(total)
}

/// Parses a complete HTTP/1.x response (headers and body, Content-Length, chunked or
/// close-delimited).
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(raw.get(..end).unwrap_or(&[])).into_owned();
    let body = raw.get(end + 4..).unwrap_or(&[]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let resp_header = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if resp_header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        dechunk(body)?
    } else if let Some(cl) = resp_header("content-length") {
        let n: usize = cl
            .parse()
            .map_err(|_| format!("bad Content-Length {cl:?}"))?;
        body.get(..n)
            .ok_or_else(|| format!("body shorter than Content-Length {n}"))?
            .to_vec()
    } else {
        body.to_vec()
    };
    if body.len() > MAX_BODY {
        return Err("body too large".into());
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    // Each round consumes at least the chunk-size line, so this ends.
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(b.get(..eol).unwrap_or(&[])).into_owned();
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        if n == 0 {
            return Ok(out);
        }
        let start = eol + 2;
        let data = b
            .get(start..start.saturating_add(n))
            .ok_or("truncated chunk")?;
        out.extend_from_slice(data);
        if out.len() > MAX_BODY {
            return Err("body too large".into());
        }
        b = b.get(start + n + 2..).unwrap_or(&[]);
    }
    Err("chunked body without the last chunk".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/ccmcip/authenticate.jsp?a=1#x").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 8080);
        assert_eq!(u.target, "/ccmcip/authenticate.jsp?a=1");
        let u = HttpUrl::parse("HTTP://ucm-pub?x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("ucm-pub", 80, "/?x")
        );
        let u = HttpUrl::parse("http://[::1]:81/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        for bad in [
            "https://x/",
            "http://",
            "http://a:b/",
            "ftp://x",
            "http://u@x/",
            "http://[::1/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nAUTHORIZEDjunk").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "AUTHORIZED"));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nFile\r\n5\r\n gone\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "File gone"));
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nuntil close").unwrap();
        assert_eq!(r.text(), "until close");
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert_eq!(
            complete_length(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab"),
            Some(40)
        );
    }
}
