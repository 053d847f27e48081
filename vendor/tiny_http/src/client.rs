use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use crate::common::{HTTPVersion, Method};
use crate::util::{Clock, RefinedTcpStream};
use crate::Limits;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // spout patch: the bounds of the connection, the read deadline of the
    // phase it is in, and how much of the current head has come.
    limits: Arc<Limits>,
    clock: Arc<Clock>,
    head_bytes: usize,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    /// spout patch: the head passed a bound of `Limits`, or a body read
    /// before the handler ran did not arrive in time (status, message).
    Refuse(u16, String),
    /// spout patch: conflicting or unusable `Content-Length` and
    /// `Transfer-Encoding` (RFC 9112 §6.3): where the body ends is unknown.
    BadFraming(HTTPVersion, &'static str),
}

/// spout patch: an error answer in the pnut envelope, with the connection
/// closed after it.
pub(crate) fn envelope(code: u16, message: &str) -> crate::Response<std::io::Cursor<Vec<u8>>> {
    let escaped: String = message
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if (c as u32) < 0x20 => vec![' '],
            c => vec![c],
        })
        .collect();
    let body = format!(r#"{{"meta":{{"code":{code},"error_message":"{escaped}"}}}}"#);
    crate::Response::from_data(body.into_bytes())
        .with_status_code(crate::StatusCode(code))
        .with_header(
            crate::Header::from_bytes(&b"Content-Type"[..], &b"application/json; charset=utf-8"[..])
                .unwrap(),
        )
        .with_header(crate::Header::from_bytes(&b"Connection"[..], &b"close"[..]).unwrap())
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Arc<Limits>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        let clock = Arc::new(Clock::default());
        let read_socket = read_socket.with_clock(clock.clone());

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            // spout patch: 16 KiB, not 1 KiB, so that a response's headers
            // and a body of up to about 16 KiB leave in one write (with
            // TCP_NODELAY each write is a segment and a wake-up of the
            // client). See SPOUT-PATCH.md.
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(16 * 1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits,
            clock,
            head_bytes: 0,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// spout patch: at most `max` bytes (`too_long` past it), and within the
    /// whole head's bound; the first byte of a head starts its deadline.
    fn read_next_line(&mut self, max: usize, too_long: &str) -> Result<AsciiString, ReadError> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b.map_err(ReadError::ReadIoError)?,
                None => {
                    let e = IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF");
                    return Err(ReadError::ReadIoError(e));
                }
            };
            if self.head_bytes == 0 {
                self.clock.set(Instant::now() + self.limits.head_timeout);
            }
            self.head_bytes += 1;

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf).map_err(|_| {
                    let e = IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII");
                    ReadError::ReadIoError(e)
                });
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
            if buf.len() > max + 1 {
                let code = if self.head_bytes == buf.len() { 414 } else { 431 };
                return Err(ReadError::Refuse(code, too_long.to_string()));
            }
            if self.head_bytes > self.limits.max_head + 2 {
                let m = format!("The request head is longer than {} bytes", self.limits.max_head);
                return Err(ReadError::Refuse(431, m));
            }
        }
    }

    /// spout patch: sends `response` at once and lingers (below); the
    /// caller then closes the connection.
    fn refuse(&mut self, ver: HTTPVersion, response: crate::Response<std::io::Cursor<Vec<u8>>>) {
        use std::io::Write;
        let mut writer = self.sink.next().unwrap();
        if response.raw_print(&mut writer, ver, &[], false, None).is_ok() {
            let _ = writer.flush();
        }
        drop(writer);
        self.linger();
    }

    /// spout patch: after an error answer, reads (and drops) what the
    /// client still sends, for at most a second and 64 KiB: closing with
    /// unread bytes resets the connection, and the reset can destroy the
    /// answer before the client reads it.
    fn linger(&mut self) {
        self.clock.set(Instant::now() + std::time::Duration::from_secs(1));
        let (mut read, mut buf) = (0, [0u8; 4096]);
        while read < 64 * 1024 {
            match self.next_header_source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        let (method, path, version, headers) = {
            // reading the request line
            // spout patch: waiting for a request has its own deadline; its
            // first byte starts the head's (`read_next_line`).
            self.head_bytes = 0;
            self.clock.set(Instant::now() + self.limits.idle_timeout);
            let (method, path, version) = {
                let max = self.limits.max_request_line;
                let too_long = format!("The request line is longer than {max} bytes");
                let line = self.read_next_line(max, &too_long)?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                let max = self.limits.max_header_line;
                let too_long = format!("A header line is longer than {max} bytes");
                loop {
                    let line = self.read_next_line(max, &too_long)?;

                    if line.is_empty() {
                        break;
                    };
                    if headers.len() == self.limits.max_headers {
                        let n = self.limits.max_headers;
                        return Err(ReadError::Refuse(431, format!("More than {n} header lines")));
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };
        // spout patch: the body (read by the handler) has its own deadline.
        self.clock.set(Instant::now() + self.limits.body_timeout);

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                // spout patch: a small body, read here, that is late.
                request::RequestCreationError::CreationIoError(e)
                    if e.kind() == ErrorKind::TimedOut =>
                {
                    ReadError::Refuse(408, "The request body did not arrive in time".into())
                }
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::BadFraming(why) => {
                    ReadError::BadFraming(version, why)
                }
            }
        })?;

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            let rq = match self.read() {
                // spout patch: every error answer is in the pnut envelope
                // and closes the connection: where the next request would
                // start is unknown.
                Err(ReadError::WrongRequestLine) => {
                    self.refuse(HTTPVersion(1, 1), envelope(400, "Malformed HTTP request line"));
                    return None;
                }

                Err(ReadError::WrongHeader(ver)) => {
                    self.refuse(ver, envelope(400, "Malformed HTTP header line"));
                    return None;
                }

                Err(ReadError::Refuse(code, message)) => {
                    self.refuse(HTTPVersion(1, 1), envelope(code, &message));
                    return None;
                }

                Err(ReadError::BadFraming(ver, why)) => {
                    self.refuse(ver, envelope(400, why));
                    return None;
                }

                // spout patch: a connection idle between requests closes
                // quietly; one whose head stopped halfway hears why.
                Err(ReadError::ReadIoError(ref err))
                    if err.kind() == ErrorKind::TimedOut && self.head_bytes > 0 =>
                {
                    let secs = self.limits.head_timeout.as_secs();
                    let message = format!("The request head did not arrive within {secs} s");
                    self.refuse(HTTPVersion(1, 1), envelope(408, &message));
                    return None;
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    let writer = self.sink.next().unwrap();
                    let response = envelope(417, "Unsupported Expect header");
                    response.raw_print(writer, ver, &[], true, None).ok();
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                let writer = self.sink.next().unwrap();
                let response = Response::from_string(
                    "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                )
                .with_status_code(StatusCode(505));
                response
                    .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                    .ok();
                continue;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
