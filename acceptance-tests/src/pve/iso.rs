//! A small ISO 9660 reader (Joliet and Rock Ridge names), enough to read a NoCloud seed
//! (`cidata`) image.

use std::collections::BTreeMap;

const SECTOR: usize = 2048;

/// Errors reading an ISO image.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IsoError {
    #[error("image too small or truncated")]
    Truncated,
    #[error("no primary volume descriptor")]
    NoPvd,
    #[error("bad directory record")]
    BadRecord,
}

/// Files read from an ISO image.
#[derive(Debug, Clone, Default)]
pub struct IsoImage {
    pub volume_id: String,
    /// Path (without leading `/`) -> contents.
    pub files: BTreeMap<String, Vec<u8>>,
}

fn slice(data: &[u8], off: usize, len: usize) -> Result<&[u8], IsoError> {
    data.get(off..off.checked_add(len).ok_or(IsoError::Truncated)?)
        .ok_or(IsoError::Truncated)
}

fn u32le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Read every file of an ISO image (Joliet names preferred, then Rock Ridge, then ISO names).
pub fn read_iso_files(data: &[u8]) -> Result<IsoImage, IsoError> {
    let mut pvd_root = None;
    let mut joliet_root = None;
    let mut volume_id = String::new();
    for i in 16..64 {
        let Ok(d) = slice(data, i * SECTOR, SECTOR) else {
            break;
        };
        if &d[1..6] != b"CD001" {
            break;
        }
        match d[0] {
            1 => {
                volume_id = String::from_utf8_lossy(&d[40..72]).trim().to_string();
                pvd_root = Some(d[156..190].to_vec());
            }
            2 if d[88] == 0x25 && d[89] == 0x2f && matches!(d[90], 0x40 | 0x43 | 0x45) => {
                joliet_root = Some(d[156..190].to_vec());
            }
            255 => break,
            _ => {}
        }
    }
    let pvd_root = pvd_root.ok_or(IsoError::NoPvd)?;
    let (root, joliet) = match joliet_root {
        Some(j) => (j, true),
        None => (pvd_root, false),
    };
    let mut files = BTreeMap::new();
    walk(data, &root, joliet, "", &mut files, 0)?;
    Ok(IsoImage { volume_id, files })
}

fn walk(
    data: &[u8],
    rec: &[u8],
    joliet: bool,
    prefix: &str,
    out: &mut BTreeMap<String, Vec<u8>>,
    depth: usize,
) -> Result<(), IsoError> {
    if depth > 16 {
        return Err(IsoError::BadRecord);
    }
    let extent = u32le(&rec[2..6]) as usize;
    let size = u32le(&rec[10..14]) as usize;
    let dir = slice(data, extent * SECTOR, size)?;
    let mut off = 0;
    while off < dir.len() {
        let len = dir[off] as usize;
        if len == 0 {
            // Records don't cross sectors: skip to the next one.
            off = (off / SECTOR + 1) * SECTOR;
            continue;
        }
        let r = slice(dir, off, len)?;
        if r.len() < 34 {
            return Err(IsoError::BadRecord);
        }
        let name_len = r[32] as usize;
        let raw_name = slice(r, 33, name_len)?;
        let flags = r[25];
        off += len;
        if name_len == 1 && (raw_name[0] == 0 || raw_name[0] == 1) {
            continue;
        }
        let mut name = if joliet {
            let units: Vec<u16> = raw_name
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            let mut su = 33 + name_len;
            if su % 2 == 1 {
                su += 1;
            }
            rock_ridge_name(r.get(su..).unwrap_or(&[]))
                .unwrap_or_else(|| String::from_utf8_lossy(raw_name).to_ascii_lowercase())
        };
        if let Some(p) = name.find(';') {
            name.truncate(p);
        }
        if !joliet && name.ends_with('.') {
            name.pop();
        }
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if flags & 0x02 != 0 {
            walk(data, r, joliet, &path, out, depth + 1)?;
        } else {
            let ext = u32le(&r[2..6]) as usize;
            let sz = u32le(&r[10..14]) as usize;
            out.insert(path, slice(data, ext * SECTOR, sz)?.to_vec());
        }
    }
    Ok(())
}

fn rock_ridge_name(mut su: &[u8]) -> Option<String> {
    let mut name = String::new();
    let mut found = false;
    while su.len() >= 4 {
        let len = su[2] as usize;
        if len < 4 || len > su.len() {
            break;
        }
        if &su[0..2] == b"NM" && len >= 5 {
            name.push_str(&String::from_utf8_lossy(&su[5..len]));
            found = true;
        }
        su = &su[len..];
    }
    found.then_some(name)
}
