//! Image dimensions read from a PNG or JPEG header, before anything is decoded: a small file may
//! declare a huge image (a 3 MB PNG of 32768×32768 inflates to 3 GiB), so the pixel count is
//! checked against a limit first.
use super::error::{PreprocessError, Result};

/// Default limit on the pixels of one decoded image: 25 MP, well above any robot camera
/// (4K is 8.3 MP) and a 75 MB RGB buffer at most.
pub const DEFAULT_MAX_PIXELS: u64 = 25_000_000;

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
/// Bytes of the signature, the IHDR length/type and its width and height.
const PNG_HEADER_LEN: usize = 24;
/// Bytes of a PNG chunk besides its data: length, type and CRC.
const PNG_CHUNK_OVERHEAD: usize = 12;
const JPEG_SOI: [u8; 2] = [0xff, 0xd8];
/// Most JPEG segments looked at before the frame header (real files have a handful).
const JPEG_MAX_SEGMENTS: usize = 4096;

/// Container formats the decoders accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
}

/// Format and declared size (width, height) of an encoded image.
pub fn declared_size(bytes: &[u8]) -> Result<(ImageFormat, u32, u32)> {
    if bytes.starts_with(&PNG_SIGNATURE) {
        let (w, h) = png_size(bytes)?;
        Ok((ImageFormat::Png, w, h))
    } else if bytes.starts_with(&JPEG_SOI) {
        let (w, h) = jpeg_size(bytes)?;
        Ok((ImageFormat::Jpeg, w, h))
    } else {
        Err(PreprocessError::Decode(format!(
            "{} bytes are neither PNG nor JPEG (the formats camera drivers publish)",
            bytes.len()
        )))
    }
}

/// Checks the header of an encoded image against `max_pixels` (and, for PNG, that its chunks
/// are whole) and returns its format.
pub fn check_encoded(bytes: &[u8], max_pixels: u64) -> Result<ImageFormat> {
    let (format, width, height) = declared_size(bytes)?;
    check_pixels(width, height, max_pixels)?;
    if format == ImageFormat::Png {
        png_chunks_intact(bytes)?;
    }
    Ok(format)
}

/// Refuses an empty image or one of more than `max_pixels` pixels.
pub fn check_pixels(width: u32, height: u32, max_pixels: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(PreprocessError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    Ok(())
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn png_size(bytes: &[u8]) -> Result<(u32, u32)> {
    if bytes.len() < PNG_HEADER_LEN || &bytes[12..16] != b"IHDR" {
        return Err(PreprocessError::Decode("PNG without an IHDR header".into()));
    }
    Ok((be_u32(&bytes[16..20]), be_u32(&bytes[20..24])))
}

/// Walks the PNG chunks: each must lie inside the file with a matching CRC, and the file must
/// reach `IEND`. A cut or damaged file is refused here with one error line instead of reaching
/// libpng, which prints its own complaint to stderr first. Costs one CRC pass, no inflating.
fn png_chunks_intact(bytes: &[u8]) -> Result<()> {
    let err = |why: String| PreprocessError::Decode(format!("PNG: {why}"));
    let mut at = PNG_SIGNATURE.len();
    // Every chunk takes at least 12 bytes, which bounds the walk.
    for _ in 0..=bytes.len() / PNG_CHUNK_OVERHEAD {
        let Some(head) = bytes.get(at..at + 8) else {
            return Err(err(format!(
                "the file ends at byte {} before its IEND chunk (truncated)",
                bytes.len()
            )));
        };
        let len = be_u32(head) as usize;
        let kind = &head[4..8];
        let end = at + PNG_CHUNK_OVERHEAD + len;
        let Some(crc) = bytes.get(end - 4..end) else {
            return Err(err(format!(
                "chunk {} at byte {at} declares {len} bytes, past the end of the file (truncated)",
                String::from_utf8_lossy(kind)
            )));
        };
        if crc32fast::hash(&bytes[at + 4..end - 4]) != be_u32(crc) {
            return Err(err(format!(
                "chunk {} at byte {at} fails its CRC check (damaged file)",
                String::from_utf8_lossy(kind)
            )));
        }
        if kind == b"IEND" {
            return Ok(());
        }
        at = end;
    }
    Err(err("no IEND chunk".into()))
}

/// Walks the JPEG markers up to the first start-of-frame (SOF0–SOF15 but DHT, JPG and DAC),
/// whose header holds the size, as libjpeg does.
fn jpeg_size(bytes: &[u8]) -> Result<(u32, u32)> {
    let err = |why: &str| PreprocessError::Decode(format!("JPEG: {why}"));
    let mut at = JPEG_SOI.len();
    for _ in 0..JPEG_MAX_SEGMENTS {
        // Skip to a marker; fill bytes (0xff repeated) may precede it.
        if bytes.get(at) != Some(&0xff) {
            return Err(err("no frame header before a byte that is not a marker"));
        }
        while bytes.get(at) == Some(&0xff) {
            at += 1;
        }
        let marker = *bytes.get(at).ok_or_else(|| err("no frame header"))?;
        at += 1;
        match marker {
            // Standalone markers: TEM, RST0–7.
            0x01 | 0xd0..=0xd7 => continue,
            0xd9 | 0xda => return Err(err("image data before the frame header")),
            _ => {}
        }
        let len = bytes
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(|| err("truncated segment"))?;
        if len < 2 {
            return Err(err("segment shorter than its length field"));
        }
        let is_sof = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_sof {
            // length(2) precision(1) height(2) width(2)
            let f = bytes.get(at + 3..at + 7).ok_or_else(|| err("truncated frame header"))?;
            let height = u32::from(u16::from_be_bytes([f[0], f[1]]));
            let width = u32::from(u16::from_be_bytes([f[2], f[3]]));
            return Ok((width, height));
        }
        at += len;
    }
    Err(err("too many segments before the frame header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut b = PNG_SIGNATURE.to_vec();
        b.extend(13u32.to_be_bytes());
        b.extend(b"IHDR");
        b.extend(w.to_be_bytes());
        b.extend(h.to_be_bytes());
        b.extend([8, 2, 0, 0, 0]);
        b
    }

    #[test]
    fn png_size_is_read_from_ihdr() {
        assert_eq!(
            declared_size(&png_header(640, 480)).unwrap(),
            (ImageFormat::Png, 640, 480)
        );
        let e = check_encoded(&png_header(32768, 32768), DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(e.to_string().contains("32768x32768"), "{e}");
    }

    #[test]
    fn png_chunks_must_be_whole_and_reach_iend() {
        use image::ImageEncoder;
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&[7u8; 4 * 3 * 3], 4, 3, image::ColorType::Rgb8)
            .unwrap();
        assert_eq!(check_encoded(&png, DEFAULT_MAX_PIXELS).unwrap(), ImageFormat::Png);
        let cut = check_encoded(&png[..png.len() - 5], DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(cut.to_string().contains("truncated"), "{cut}");
        let mut damaged = png.clone();
        let idat = damaged.windows(4).position(|w| w == b"IDAT").unwrap();
        damaged[idat + 6] ^= 0x55;
        let e = check_encoded(&damaged, DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(
            e.to_string().contains("chunk IDAT") && e.to_string().contains("CRC"),
            "{e}"
        );
        let no_iend = check_encoded(&png[..png.len() - 12], DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(no_iend.to_string().contains("before its IEND"), "{no_iend}");
    }

    #[test]
    fn jpeg_size_is_read_from_the_first_frame_header() {
        // SOI, APP0 (length 4), fill bytes, SOF2 (progressive) 300 high, 500 wide.
        let jpeg = [
            0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xff, 0xc2, 0, 11, 8, 0x01, 0x2c, 0x01, 0xf4, 3, 0, 0, 0,
        ];
        assert_eq!(declared_size(&jpeg).unwrap(), (ImageFormat::Jpeg, 500, 300));
        // DHT (0xc4) is not a frame header.
        let dht_only = [0xff, 0xd8, 0xff, 0xc4, 0, 6, 0, 0, 0, 0];
        assert!(declared_size(&dht_only).is_err());
    }

    #[test]
    fn other_bytes_are_refused() {
        for bad in [
            &b""[..],
            b"GIF89a....",
            &[0xff, 0xd8, 0xff, 0xda, 0, 2],
            &[0xff, 0xd8, 0x00],
        ] {
            assert!(declared_size(bad).is_err(), "{bad:?}");
        }
        assert!(check_pixels(0, 10, DEFAULT_MAX_PIXELS).is_err());
        assert!(check_pixels(5000, 5000, DEFAULT_MAX_PIXELS).is_ok());
        assert!(check_pixels(5000, 5001, DEFAULT_MAX_PIXELS).is_err());
    }
}
