//! NoCloud seed ISO builder: a small, deterministic ISO 9660 writer with Joliet names.
//!
//! cloud-init's NoCloud datasource looks for a filesystem labelled `cidata` holding
//! `user-data`, `meta-data` and optionally `network-config` and `vendor-data`. Those names
//! contain `-` and are longer than 8.3, which plain ISO 9660 cannot store; the Joliet
//! supplementary volume descriptor carries the real names (Linux mounts Joliet by default,
//! and `blkid` reads the label from it too).
//!
//! Layout (2048-byte sectors): 0-15 system area; 16 primary volume descriptor; 17 Joliet
//! supplementary volume descriptor (UCS-2 level 3, `%/E`); 18 terminator; 19-22 type L and
//! type M path tables for the primary and Joliet trees; then the primary root directory, the
//! Joliet root directory and the file data (shared by both trees). Only a flat root directory
//! is supported, which is all a seed needs.
//!
//! Why not a crate: the maintained Rust ISO writers (e.g. `hadris-iso`) are large and their
//! write APIs have changed between major versions; a seed needs ~300 lines that are checked
//! against `isoinfo` and `xorriso` in this crate's tests.

use crate::error::{Error, Result};

const SECTOR: usize = 2048;

/// The files of a NoCloud seed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoCloudSeed {
    /// `user-data` (usually `#cloud-config ...`).
    pub user_data: String,
    /// `meta-data` (`instance-id: ...`, `local-hostname: ...`).
    pub meta_data: String,
    /// Optional `network-config` (network config v1/v2).
    pub network_config: Option<String>,
    /// Optional `vendor-data`.
    pub vendor_data: Option<String>,
}

impl NoCloudSeed {
    /// Build the ISO image (volume id `cidata`). `timestamp` (Unix seconds) fixes every date
    /// in the image, making the output byte-for-byte reproducible; `None` uses the current time.
    pub fn build_iso(&self, timestamp: Option<u64>) -> Result<Vec<u8>> {
        let mut files: Vec<(&str, &[u8])> = vec![
            ("meta-data", self.meta_data.as_bytes()),
            ("user-data", self.user_data.as_bytes()),
        ];
        if let Some(n) = &self.network_config {
            files.push(("network-config", n.as_bytes()));
        }
        if let Some(v) = &self.vendor_data {
            files.push(("vendor-data", v.as_bytes()));
        }
        build_iso("cidata", &files, timestamp)
    }
}

/// A date as ISO 9660 needs it (UTC).
#[derive(Debug, Clone, Copy)]
struct DateTime {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

fn datetime(unix: u64) -> DateTime {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // civil-from-days (proleptic Gregorian), days since 1970-01-01
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    DateTime {
        year: y as u32,
        month: m as u32,
        day: d as u32,
        hour: (secs / 3600) as u32,
        minute: ((secs % 3600) / 60) as u32,
        second: (secs % 60) as u32,
    }
}

fn both16(v: u16) -> [u8; 4] {
    let l = v.to_le_bytes();
    let b = v.to_be_bytes();
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let l = v.to_le_bytes();
    let b = v.to_be_bytes();
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

/// 7-byte directory record date.
fn dir_date(t: &DateTime) -> [u8; 7] {
    [
        (t.year.saturating_sub(1900)).min(255) as u8,
        t.month as u8,
        t.day as u8,
        t.hour as u8,
        t.minute as u8,
        t.second as u8,
        0, // GMT offset in 15-minute units
    ]
}

/// 17-byte volume descriptor date.
fn vd_date(t: &DateTime) -> [u8; 17] {
    let s = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}00",
        t.year.min(9999),
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second
    );
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(&s.as_bytes()[..16]);
    out
}

fn unset_vd_date() -> [u8; 17] {
    let mut out = [b'0'; 17];
    out[16] = 0;
    out
}

/// Fill `field` with `s` (ASCII) padded with spaces.
fn put_a(field: &mut [u8], s: &str) {
    field.fill(b' ');
    let b = s.as_bytes();
    let n = b.len().min(field.len());
    field[..n].copy_from_slice(&b[..n]);
}

/// Fill `field` with `s` in UCS-2BE padded with UCS-2 spaces.
fn put_ucs2(field: &mut [u8], s: &str) {
    for pair in field.chunks_mut(2) {
        if pair.len() == 2 {
            pair.copy_from_slice(&[0x00, 0x20]);
        } else {
            pair[0] = 0x20;
        }
    }
    let mut i = 0;
    for u in s.encode_utf16() {
        if i + 2 > field.len() {
            break;
        }
        field[i..i + 2].copy_from_slice(&u.to_be_bytes());
        i += 2;
    }
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
}

/// ISO 9660 level 1 name (`USER_DAT.;1`) for a file name.
fn iso_level1_name(name: &str, taken: &mut Vec<String>) -> String {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| {
                let c = c.to_ascii_uppercase();
                if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(max)
            .collect()
    };
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, e),
        _ => (name, ""),
    };
    let mut base = clean(stem, 8);
    let ext = clean(ext, 3);
    let mut n = 0u32;
    loop {
        let candidate = format!("{base}.{ext};1");
        if !taken.contains(&candidate) {
            taken.push(candidate.clone());
            return candidate;
        }
        n += 1;
        let suffix = n.to_string();
        let keep = 8usize.saturating_sub(suffix.len());
        base = format!("{}{}", clean(stem, keep), suffix);
    }
}

struct Entry {
    id: Vec<u8>,
    extent: u32,
    size: u32,
    dir: bool,
}

fn dir_record(e: &Entry, date: &[u8; 7]) -> Vec<u8> {
    let len_fi = e.id.len();
    let pad = usize::from(len_fi.is_multiple_of(2));
    let len = 33 + len_fi + pad;
    let mut r = vec![0u8; len];
    r[0] = len as u8;
    r[2..10].copy_from_slice(&both32(e.extent));
    r[10..18].copy_from_slice(&both32(e.size));
    r[18..25].copy_from_slice(date);
    r[25] = if e.dir { 0x02 } else { 0x00 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = len_fi as u8;
    r[33..33 + len_fi].copy_from_slice(&e.id);
    r
}

/// Lay out directory records into whole sectors (records never cross a sector boundary).
fn dir_extent(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for r in records {
        let used = out.len() % SECTOR;
        if used + r.len() > SECTOR {
            out.resize(out.len() + (SECTOR - used), 0);
        }
        out.extend_from_slice(r);
    }
    let rem = out.len() % SECTOR;
    if rem != 0 || out.is_empty() {
        out.resize(out.len() + (SECTOR - rem), 0);
    }
    out
}

fn dir_sectors(records: &[Vec<u8>]) -> usize {
    dir_extent(records).len() / SECTOR
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| !c.is_control() && !matches!(c, '/' | '\\' | ';' | '*' | ':' | '?'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "ISO file name {name:?} is not allowed (1-64 characters, no / \\ ; * : ?)"
        )))
    }
}

/// Build an ISO 9660 + Joliet image with the given flat files.
///
/// `volume_id`: up to 16 characters (`cidata` for NoCloud). `timestamp`: Unix seconds used
/// for every date (reproducible output), or `None` for now.
pub fn build_iso(
    volume_id: &str,
    files: &[(&str, &[u8])],
    timestamp: Option<u64>,
) -> Result<Vec<u8>> {
    if volume_id.is_empty()
        || volume_id.len() > 16
        || !volume_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::InvalidArgument(format!(
            "ISO volume id {volume_id:?} must be 1-16 letters, digits, '_' or '-'"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (name, data) in files {
        validate_name(name)?;
        if !seen.insert(*name) {
            return Err(Error::InvalidArgument(format!(
                "ISO file {name:?} given twice"
            )));
        }
        if data.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "ISO file {name:?} too large"
            )));
        }
    }
    let now = timestamp.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let t = datetime(now);
    let rec_date = dir_date(&t);

    // Names in both trees.
    let mut taken = Vec::new();
    let named: Vec<(String, Vec<u8>, &[u8])> = files
        .iter()
        .map(|(n, d)| (iso_level1_name(n, &mut taken), ucs2(n), *d))
        .collect();

    // Sector plan: 16 VD, 17 SVD, 18 terminator, 19..22 path tables.
    let path_l = 19u32;
    let path_m = 20u32;
    let jpath_l = 21u32;
    let jpath_m = 22u32;
    let root = 23u32;

    // Directory sizes depend only on the records' lengths, so compute with placeholder
    // extents first.
    let placeholder = |id: Vec<u8>, dir: bool| Entry {
        id,
        extent: 0,
        size: 0,
        dir,
    };
    let mut primary_ids: Vec<Vec<u8>> = named
        .iter()
        .map(|(p, _, _)| p.as_bytes().to_vec())
        .collect();
    primary_ids.sort();
    let mut joliet_ids: Vec<Vec<u8>> = named.iter().map(|(_, j, _)| j.clone()).collect();
    joliet_ids.sort();
    let size_of = |ids: &[Vec<u8>]| {
        let mut recs = vec![
            dir_record(&placeholder(vec![0], true), &rec_date),
            dir_record(&placeholder(vec![1], true), &rec_date),
        ];
        recs.extend(
            ids.iter()
                .map(|id| dir_record(&placeholder(id.clone(), false), &rec_date)),
        );
        dir_sectors(&recs)
    };
    let root_sectors = size_of(&primary_ids) as u32;
    let jroot = root + root_sectors;
    let jroot_sectors = size_of(&joliet_ids) as u32;
    let mut next = jroot + jroot_sectors;

    // File extents (shared by both trees), in the given order.
    let mut extents = Vec::new();
    for (_, _, data) in &named {
        let sectors = data.len().div_ceil(SECTOR) as u32;
        extents.push(next);
        next += sectors;
    }
    let total = next;

    let mk_dir = |self_extent: u32, self_sectors: u32, joliet: bool| -> Vec<u8> {
        let dsize = self_sectors * SECTOR as u32;
        let mut recs = vec![
            dir_record(
                &Entry {
                    id: vec![0],
                    extent: self_extent,
                    size: dsize,
                    dir: true,
                },
                &rec_date,
            ),
            dir_record(
                &Entry {
                    id: vec![1],
                    extent: self_extent,
                    size: dsize,
                    dir: true,
                },
                &rec_date,
            ),
        ];
        let mut entries: Vec<Entry> = named
            .iter()
            .zip(&extents)
            .map(|((p, j, d), ext)| Entry {
                id: if joliet {
                    j.clone()
                } else {
                    p.as_bytes().to_vec()
                },
                extent: if d.is_empty() { 0 } else { *ext },
                size: d.len() as u32,
                dir: false,
            })
            .collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        recs.extend(entries.iter().map(|e| dir_record(e, &rec_date)));
        dir_extent(&recs)
    };

    let root_record = |extent: u32, sectors: u32| -> Vec<u8> {
        dir_record(
            &Entry {
                id: vec![0],
                extent,
                size: sectors * SECTOR as u32,
                dir: true,
            },
            &rec_date,
        )
    };

    let path_table = |extent: u32, big_endian: bool| -> Vec<u8> {
        let mut e = vec![1u8, 0];
        if big_endian {
            e.extend_from_slice(&extent.to_be_bytes());
            e.extend_from_slice(&1u16.to_be_bytes());
        } else {
            e.extend_from_slice(&extent.to_le_bytes());
            e.extend_from_slice(&1u16.to_le_bytes());
        }
        e.push(0); // root directory identifier
        e.push(0); // pad to even length
        e
    };
    let path_table_size = path_table(0, false).len() as u32;

    let volume_descriptor = |joliet: bool| -> Vec<u8> {
        let mut vd = vec![0u8; SECTOR];
        vd[0] = if joliet { 2 } else { 1 };
        vd[1..6].copy_from_slice(b"CD001");
        vd[6] = 1;
        if joliet {
            put_ucs2(&mut vd[8..40], "");
            put_ucs2(&mut vd[40..72], volume_id);
            vd[88..91].copy_from_slice(b"%/E");
        } else {
            put_a(&mut vd[8..40], "");
            put_a(&mut vd[40..72], volume_id);
        }
        vd[80..88].copy_from_slice(&both32(total));
        vd[120..124].copy_from_slice(&both16(1));
        vd[124..128].copy_from_slice(&both16(1));
        vd[128..132].copy_from_slice(&both16(SECTOR as u16));
        vd[132..140].copy_from_slice(&both32(path_table_size));
        let (l, m, r, rs) = if joliet {
            (jpath_l, jpath_m, jroot, jroot_sectors)
        } else {
            (path_l, path_m, root, root_sectors)
        };
        vd[140..144].copy_from_slice(&l.to_le_bytes());
        vd[148..152].copy_from_slice(&m.to_be_bytes());
        vd[156..190].copy_from_slice(&root_record(r, rs));
        let text_fields: [(usize, usize, &str); 7] = [
            (190, 318, ""),
            (318, 446, ""),
            (446, 574, ""),
            (574, 702, "WADDLE NOCLOUD SEED"),
            (702, 739, ""),
            (739, 776, ""),
            (776, 813, ""),
        ];
        for (a, b, s) in text_fields {
            if joliet {
                put_ucs2(&mut vd[a..b], s);
                if (b - a) % 2 == 1 {
                    vd[b - 1] = 0x20; // odd-length Joliet fields end with one ASCII space
                }
            } else {
                put_a(&mut vd[a..b], s);
            }
        }
        let d = vd_date(&t);
        vd[813..830].copy_from_slice(&d);
        vd[830..847].copy_from_slice(&d);
        vd[847..864].copy_from_slice(&unset_vd_date());
        vd[864..881].copy_from_slice(&unset_vd_date());
        vd[881] = 1;
        vd
    };

    let mut img = vec![0u8; total as usize * SECTOR];
    let mut put = |sector: u32, bytes: &[u8]| {
        let off = sector as usize * SECTOR;
        img[off..off + bytes.len()].copy_from_slice(bytes);
    };
    put(16, &volume_descriptor(false));
    put(17, &volume_descriptor(true));
    let mut term = vec![0u8; SECTOR];
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    term[6] = 1;
    put(18, &term);
    put(path_l, &path_table(root, false));
    put(path_m, &path_table(root, true));
    put(jpath_l, &path_table(jroot, false));
    put(jpath_m, &path_table(jroot, true));
    put(root, &mk_dir(root, root_sectors, false));
    put(jroot, &mk_dir(jroot, jroot_sectors, true));
    for ((_, _, data), ext) in named.iter().zip(&extents) {
        put(*ext, data);
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let t = datetime(0);
        assert_eq!((t.year, t.month, t.day, t.hour), (1970, 1, 1, 0));
        // 2026-01-31T12:34:56Z
        let t = datetime(1_769_862_896);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2026, 1, 31, 12, 34, 56)
        );
        let t = datetime(951_782_400); // 2000-02-29
        assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
        assert_eq!(&vd_date(&datetime(0))[..16], b"1970010100000000");
    }

    #[test]
    fn level1_names_are_unique_and_legal() {
        let mut taken = Vec::new();
        assert_eq!(iso_level1_name("user-data", &mut taken), "USER_DAT.;1");
        assert_eq!(iso_level1_name("meta-data", &mut taken), "META_DAT.;1");
        assert_eq!(iso_level1_name("network-config", &mut taken), "NETWORK_.;1");
        assert_eq!(iso_level1_name("user-datb", &mut taken), "USER_DA1.;1");
        assert_eq!(iso_level1_name("a.tar.gz", &mut taken), "A_TAR.GZ;1");
    }

    #[test]
    fn structure_and_determinism() {
        let seed = NoCloudSeed {
            user_data: "#cloud-config\nhostname: a\n".into(),
            meta_data: "instance-id: a\n".into(),
            network_config: Some("version: 2\n".into()),
            vendor_data: None,
        };
        let a = seed.build_iso(Some(1_700_000_000)).unwrap();
        let b = seed.build_iso(Some(1_700_000_000)).unwrap();
        assert_eq!(a, b, "same input and timestamp must give identical bytes");
        assert_eq!(a.len() % SECTOR, 0);
        assert_eq!(&a[16 * SECTOR + 1..16 * SECTOR + 6], b"CD001");
        assert_eq!(a[16 * SECTOR], 1);
        assert_eq!(&a[16 * SECTOR + 40..16 * SECTOR + 46], b"cidata");
        assert_eq!(a[17 * SECTOR], 2);
        assert_eq!(&a[17 * SECTOR + 88..17 * SECTOR + 91], b"%/E");
        assert_eq!(a[18 * SECTOR], 255);
        let total = u32::from_le_bytes(a[16 * SECTOR + 80..16 * SECTOR + 84].try_into().unwrap());
        assert_eq!(total as usize * SECTOR, a.len());
        assert!(build_iso("cidata", &[("a/b", b"x")], None).is_err());
        assert!(build_iso("cidata", &[("x", b"1"), ("x", b"2")], None).is_err());
        assert!(build_iso("waytoolongvolumeid", &[], None).is_err());
    }
}
