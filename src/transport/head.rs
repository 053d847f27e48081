//! The stream listener's request head: read under one deadline and one
//! size bound, parsed into our `Req`, and the refusals (a complete HTTP
//! answer with the error envelope, then a bounded linger so the answer
//! survives the close).

use crate::error::ApiError;
use crate::http::{Req, Resp};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Longest request head we read (431 past it): a stream request is a path
/// with a few parameters and a handful of headers.
pub(super) const MAX_HEAD: usize = 8 * 1024;

/// Answers a refused connection without ever blocking the accept loop:
/// what the client already sent is read first (closing with unread bytes
/// resets the connection, which can lose the answer), then one write.
pub(super) fn refuse_fast(mut sock: &TcpStream, answer: &[u8]) {
    if sock.set_nonblocking(true).is_ok() {
        let _ = sock.read(&mut [0u8; 4096]);
        let _ = sock.write(answer);
    }
    let _ = sock.shutdown(Shutdown::Both);
}

/// Why a request head could not be read.
pub(super) enum HeadError {
    /// The client closed, or the socket failed: nothing to answer.
    Gone,
    /// The head did not arrive in time (408).
    Late,
    /// The head is longer than `MAX_HEAD` (431).
    TooLong,
}

/// Reads the request head within `timeout` of the first read (one
/// deadline for the whole head, not one per read: a client that dribbles
/// a byte now and then still runs out of time); returns it and any bytes
/// after it.
pub(super) fn read_head(sock: &mut TcpStream, timeout: Duration) -> Result<(String, Vec<u8>), HeadError> {
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(HeadError::Late);
        }
        let _ = sock.set_read_timeout(Some(left));
        let n = match sock.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(HeadError::Late)
            }
            Err(_) => return Err(HeadError::Gone),
        };
        // Only the new bytes (and the three before them) can complete the
        // blank line that ends the head.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + from) {
            if end > MAX_HEAD {
                return Err(HeadError::TooLong);
            }
            let rest = buf[end + 4..].to_vec();
            buf.truncate(end);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLong);
        }
    }
}

pub(super) fn parse_head(head: &str) -> Option<Req> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, url) = (first.next()?, first.next()?);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Req::new(method, url, headers, Vec::new()))
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        429 => "Too Many Requests",
        _ => "Error",
    }
}

/// How long, and how much, a refused connection is still read after its
/// answer: closing a socket with unread bytes resets it, and the reset can
/// destroy the answer before the client reads it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Answers with a complete HTTP response holding the error envelope and
/// closes gracefully.
pub(super) fn refuse(mut sock: &TcpStream, e: &ApiError) {
    let (content_type, body) = Resp::error(e).into_body(false);
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        e.status,
        reason_phrase(e.status),
        body.len()
    );
    let _ = sock.write_all(head.as_bytes()).and_then(|_| sock.write_all(&body));
    let _ = sock.shutdown(Shutdown::Write);
    let deadline = std::time::Instant::now() + LINGER;
    let (mut read, mut chunk) = (0, [0u8; 4096]);
    while read < LINGER_BYTES {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match sock.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
}
