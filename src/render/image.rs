//! Images: the size of an uploaded PNG, JPEG or GIF read from its header,
//! and the generated default avatar and cover (a plain PNG).

use std::sync::OnceLock;

/// The media type and size of an image, from its first bytes; `None` when
/// they are not a PNG, JPEG or GIF.
pub fn probe(b: &[u8]) -> Option<(&'static str, (u32, u32))> {
    let be32 = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let be16 = |i: usize| Some(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?) as u32);
    if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16) == Some(b"IHDR") {
        return Some(("image/png", (be32(16)?, be32(20)?)));
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        let le16 = |i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?) as u32);
        return Some(("image/gif", (le16(6)?, le16(8)?)));
    }
    if b.starts_with(&[0xff, 0xd8]) {
        // Walk the segments to a start-of-frame (SOF0..SOF15 but DHT, JPG, DAC).
        let mut i = 2;
        while i + 9 < b.len() && b[i] == 0xff {
            let marker = b[i + 1];
            let len = be16(i + 2)? as usize;
            if (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
                return Some(("image/jpeg", (be16(i + 7)?, be16(i + 5)?)));
            }
            i += 2 + len;
        }
    }
    None
}

/// A `w` × `h` PNG of one colour, uncompressed (stored deflate blocks).
pub fn solid_png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let row: Vec<u8> = std::iter::once(0).chain((0..w).flat_map(|_| rgb)).collect();
    let raw: Vec<u8> = (0..h).flat_map(|_| row.iter().copied()).collect();
    let mut z = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, c) in chunks.iter().enumerate() {
        z.push(u8::from(i + 1 == chunks.len()));
        z.extend((c.len() as u16).to_le_bytes());
        z.extend((!(c.len() as u16)).to_le_bytes());
        z.extend_from_slice(c);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &z[..]), (b"IEND", &[][..])] {
        png.extend((data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(&png[start..]);
        png.extend(crc.to_be_bytes());
    }
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in bytes {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// The default avatar or cover, made once.
pub fn default_image(which: &str) -> &'static [u8] {
    static AVATAR: OnceLock<Vec<u8>> = OnceLock::new();
    static COVER: OnceLock<Vec<u8>> = OnceLock::new();
    let (cell, (w, h)) = if which == "avatar" {
        (&AVATAR, crate::model::AVATAR_DEFAULT)
    } else {
        (&COVER, crate::model::COVER_DEFAULT)
    };
    cell.get_or_init(|| solid_png(w, h, [0x9e, 0xa7, 0xb3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated PNG reads back with its size; other headers too.
    #[test]
    fn probe_reads_sizes() {
        assert_eq!(probe(&solid_png(3, 2, [1, 2, 3])), Some(("image/png", (3, 2))));
        let gif = [b"GIF89a".as_slice(), &[5, 0, 7, 0]].concat();
        assert_eq!(probe(&gif), Some(("image/gif", (5, 7))));
        let jpeg = [0xff, 0xd8, 0xff, 0xc0, 0, 17, 8, 0, 40, 0, 30, 3, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(probe(&jpeg), Some(("image/jpeg", (30, 40))));
        assert_eq!(probe(b"<svg/>"), None);
    }
}
