//! Bytes on the wire, encoded once and shared: a server-to-client websocket
//! text or close frame (unmasked, so one encoding serves every connection)
//! and an HTTP chunk holding one JSON document and its `\r\n`.

/// Which transport a connection uses; decides how a payload is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Ws,
    Chunked,
}

fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut f = Vec::with_capacity(n + 10);
    f.push(0x80 | opcode);
    if n < 126 {
        f.push(n as u8);
    } else if n <= 0xffff {
        f.push(126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

/// One final, unmasked text frame.
pub fn ws_text(payload: &[u8]) -> Vec<u8> {
    ws_frame(0x1, payload)
}

/// A close frame with a status code and a reason (cut to fit 123 bytes on a
/// character boundary).
pub fn ws_close(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(&reason.as_bytes()[..end]);
    ws_frame(0x8, &p)
}

/// One chunk carrying `payload` followed by `\r\n` (App.net's separator).
pub fn chunk(payload: &[u8]) -> Vec<u8> {
    let mut c = format!("{:x}\r\n", payload.len() + 2).into_bytes();
    c.extend_from_slice(payload);
    c.extend_from_slice(b"\r\n\r\n");
    c
}

/// The chunked heartbeat: a chunk holding a blank line.
pub const CHUNK_HEARTBEAT: &[u8] = b"2\r\n\r\n\r\n";
/// The last chunk, which ends a chunked body.
pub const CHUNK_END: &[u8] = b"0\r\n\r\n";

/// A JSON document framed for `t`.
pub fn frame(t: Transport, payload: &[u8]) -> Vec<u8> {
    match t {
        Transport::Ws => ws_text(payload),
        Transport::Chunked => chunk(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_lengths() {
        assert_eq!(ws_text(b"hi"), vec![0x81, 2, b'h', b'i']);
        let f = ws_text(&[b'a'; 200]);
        assert_eq!(&f[..4], &[0x81, 126, 0, 200]);
        let f = ws_text(&vec![b'a'; 70_000]);
        assert_eq!(f[1], 127);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let f = ws_close(1000, &"é".repeat(100));
        assert_eq!(f[0], 0x88);
        let len = f[1] as usize;
        assert!(len <= 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }

    #[test]
    fn chunks() {
        assert_eq!(chunk(b"{}"), b"4\r\n{}\r\n\r\n".to_vec());
    }
}
