//! A check of an MCAP file's summary section before `mcap` parses it.
//!
//! `mcap` reads a string by reserving the length its prefix declares, so a 40-byte record that
//! declares a 4 GiB topic name makes it ask for 4 GiB (an abort where memory cannot be
//! overcommitted), and an Attachment record placed in the summary can make it slice out of
//! bounds. This pass walks the summary records (one at a time, each at most
//! [`MAX_RECORD_BYTES`]) and refuses any length prefix larger than what its record holds and any
//! record kind that does not belong in a summary, so the parser only ever sees consistent records.
use std::io::{Read, Seek, SeekFrom};

use super::reader::MAX_RECORD_BYTES;

const MAGIC: &[u8; 8] = b"\x89MCAP0\r\n";
/// Opcode (1) + record length (8) + the footer's 20 bytes.
const FOOTER_RECORD_LEN: u64 = 29;
const OP_FOOTER: u8 = 0x02;
const OP_SCHEMA: u8 = 0x03;
const OP_CHANNEL: u8 = 0x04;
const OP_CHUNK_INDEX: u8 = 0x08;
const OP_ATTACHMENT_INDEX: u8 = 0x0A;
const OP_STATISTICS: u8 = 0x0B;
const OP_METADATA_INDEX: u8 = 0x0D;
const OP_SUMMARY_OFFSET: u8 = 0x0E;
/// Opcodes from here on are reserved for extensions; readers skip them.
const FIRST_EXTENSION_OP: u8 = 0x80;
/// Bytes of one entry of a u16 → u64 map (chunk index offsets, statistics counts).
const INT_MAP_ENTRY: usize = 10;
/// Most records walked in one summary (a long recording has one chunk index per few MB).
const MAX_SUMMARY_RECORDS: usize = 1 << 22;

/// Walks the summary section of the MCAP file in `file` (of `size` bytes). Files without a
/// readable footer or summary pass unchanged: `mcap`'s reader reports those itself.
pub fn check_summary<F: Read + Seek>(file: &mut F, size: u64) -> Result<(), String> {
    let Some(footer_at) = size.checked_sub(FOOTER_RECORD_LEN + MAGIC.len() as u64) else {
        return Ok(());
    };
    let mut footer = [0u8; FOOTER_RECORD_LEN as usize + 8];
    file.seek(SeekFrom::Start(footer_at)).map_err(|e| e.to_string())?;
    file.read_exact(&mut footer).map_err(|e| e.to_string())?;
    if footer[0] != OP_FOOTER || &footer[29..] != MAGIC {
        return Ok(());
    }
    let summary_start = u64_at(&footer, 9);
    if summary_start == 0 {
        return Ok(());
    }
    if summary_start > footer_at {
        return Err(format!(
            "the MCAP footer puts the summary at byte {summary_start}, past the footer at {footer_at}"
        ));
    }
    file.seek(SeekFrom::Start(summary_start)).map_err(|e| e.to_string())?;
    let mut at = summary_start;
    let mut body = Vec::new();
    for _ in 0..MAX_SUMMARY_RECORDS {
        if at >= footer_at {
            return Ok(());
        }
        let mut head = [0u8; 9];
        file.read_exact(&mut head)
            .map_err(|e| format!("MCAP summary record at byte {at}: {e}"))?;
        let len = u64_at(&head, 1);
        let end = at
            .checked_add(9)
            .and_then(|a| a.checked_add(len))
            .filter(|&e| e <= footer_at)
            .ok_or_else(|| format!("MCAP summary record at byte {at} declares {len} bytes, past the footer"))?;
        if len > MAX_RECORD_BYTES as u64 {
            return Err(format!(
                "MCAP summary record at byte {at} declares {len} bytes (limit {MAX_RECORD_BYTES})"
            ));
        }
        body.resize(len as usize, 0);
        file.read_exact(&mut body)
            .map_err(|e| format!("MCAP summary record at byte {at}: {e}"))?;
        check_record(head[0], &body).map_err(|why| format!("MCAP summary record at byte {at}: {why}"))?;
        at = end;
    }
    Err(format!(
        "MCAP summary section holds more than {MAX_SUMMARY_RECORDS} records"
    ))
}

/// Checks the length prefixes of one summary record (`op`, `body` without opcode and length).
/// Fixed-size fields cut short are left to the parser, which refuses them cleanly.
pub fn check_record(op: u8, body: &[u8]) -> Result<(), String> {
    let mut c = Fields::new(body);
    match op {
        OP_SCHEMA => {
            c.skip(2)?;
            c.string("schema name")?;
            c.string("schema encoding")?;
            c.bytes_u32("schema data")?;
        }
        OP_CHANNEL => {
            c.skip(4)?;
            c.string("channel topic")?;
            c.string("channel message encoding")?;
            c.string_map("channel metadata")?;
        }
        OP_CHUNK_INDEX => {
            c.skip(32)?;
            c.int_map("chunk index message index offsets")?;
            c.skip(8)?;
            c.string("chunk index compression")?;
        }
        OP_ATTACHMENT_INDEX => {
            c.skip(40)?;
            c.string("attachment index name")?;
            c.string("attachment index media type")?;
        }
        OP_STATISTICS => {
            c.skip(42)?;
            c.int_map("statistics channel message counts")?;
        }
        OP_METADATA_INDEX => {
            c.skip(16)?;
            c.string("metadata index name")?;
        }
        OP_SUMMARY_OFFSET => {}
        op if op >= FIRST_EXTENSION_OP => {}
        op => {
            return Err(format!(
                "a record of opcode 0x{op:02x} does not belong in the summary section"
            ))
        }
    }
    Ok(())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A cursor over a record body: `Err` when a length prefix exceeds what remains. A body cut
/// short inside a fixed-size field ends the walk quietly (the parser refuses it).
struct Fields<'a> {
    rest: &'a [u8],
    short: bool,
}

impl<'a> Fields<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Self { rest, short: false }
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        match self.rest.get(n..) {
            Some(rest) => self.rest = rest,
            None => self.short = true,
        }
        Ok(())
    }

    /// A u32 length prefix and that many bytes, which must lie inside the body.
    fn bytes_u32(&mut self, what: &str) -> Result<&'a [u8], String> {
        if self.short {
            return Ok(&[]);
        }
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            self.short = true;
            return Ok(&[]);
        };
        let n = u32::from_le_bytes(*len) as usize;
        let inner = rest
            .get(..n)
            .ok_or_else(|| format!("{what} declares {n} bytes, the record holds {}", rest.len()))?;
        self.rest = &rest[n..];
        Ok(inner)
    }

    fn string(&mut self, what: &str) -> Result<(), String> {
        self.bytes_u32(what).map(|_| ())
    }

    /// A map of u16 to u64 with a u32 byte length. `mcap` reads whole entries while it is short
    /// of that length, so a length that is no multiple of an entry would shift every later field.
    fn int_map(&mut self, what: &str) -> Result<(), String> {
        let map = self.bytes_u32(what)?;
        if map.len() % INT_MAP_ENTRY != 0 {
            return Err(format!(
                "{what} holds {} bytes, not a whole number of {INT_MAP_ENTRY}-byte entries",
                map.len()
            ));
        }
        Ok(())
    }

    /// A map with a u32 byte length whose keys and values are strings inside it.
    fn string_map(&mut self, what: &str) -> Result<(), String> {
        let mut inner = Fields::new(self.bytes_u32(what)?);
        // Each entry takes at least 8 bytes, so this bounds the loop.
        while !inner.rest.is_empty() && !inner.short {
            inner.string(what)?;
            inner.string(what)?;
        }
        // `mcap` would read the rest of a cut entry from the fields after the map.
        if inner.short {
            return Err(format!("{what} ends inside an entry"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    fn channel(topic_len_claim: Option<u32>) -> Vec<u8> {
        let mut b = vec![1, 0, 1, 0];
        match topic_len_claim {
            Some(n) => {
                b.extend_from_slice(&n.to_le_bytes());
                b.extend_from_slice(b"/cam");
            }
            None => b.extend(string(b"/cam")),
        }
        b.extend(string(b"cdr"));
        let map = [string(b"k"), string(b"v")].concat();
        b.extend(string(&map));
        b
    }

    #[test]
    fn consistent_records_pass_and_oversized_prefixes_are_refused() {
        assert_eq!(check_record(OP_CHANNEL, &channel(None)), Ok(()));
        let e = check_record(OP_CHANNEL, &channel(Some(795_308_909))).unwrap_err();
        assert!(e.contains("channel topic declares 795308909 bytes"), "{e}");
        // A map entry whose value claims more than the map holds.
        let mut b = vec![1, 0, 1, 0];
        b.extend(string(b"/cam"));
        b.extend(string(b"cdr"));
        let map = [string(b"k"), 1000u32.to_le_bytes().to_vec()].concat();
        b.extend(string(&map));
        assert!(check_record(OP_CHANNEL, &b).unwrap_err().contains("channel metadata"));
        // A map whose last entry has a key and no value.
        let mut b = vec![1, 0, 1, 0];
        b.extend(string(b"/cam"));
        b.extend(string(b"cdr"));
        b.extend(string(&string(b"k")));
        let e = check_record(OP_CHANNEL, &b).unwrap_err();
        assert!(e.contains("ends inside an entry"), "{e}");
        // A body cut short in a fixed field is left to the parser.
        assert_eq!(check_record(OP_CHUNK_INDEX, &[0; 10]), Ok(()));
        let attachment = check_record(0x09, &[0; 40]).unwrap_err();
        assert!(attachment.contains("does not belong"), "{attachment}");
        assert_eq!(check_record(0x80, &[0xff; 3]), Ok(()));
        // A chunk index whose offsets map is 67 bytes: mcap would read 7 entries (70 bytes).
        let mut ci = vec![0u8; 32];
        ci.extend_from_slice(&67u32.to_le_bytes());
        ci.extend_from_slice(&[0; 67]);
        ci.extend_from_slice(&[0; 8]);
        ci.extend(string(b""));
        ci.extend_from_slice(&[0; 16]);
        let e = check_record(OP_CHUNK_INDEX, &ci).unwrap_err();
        assert!(e.contains("not a whole number of 10-byte entries"), "{e}");
        ci[32..36].copy_from_slice(&70u32.to_le_bytes());
        ci.splice(36..36, [0; 3]);
        assert_eq!(check_record(OP_CHUNK_INDEX, &ci), Ok(()));
    }
}
