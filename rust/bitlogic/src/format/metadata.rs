//! The `__metadata__` of a network file (FORMAT.md section 2): the format name, the version and which versions are
//! read, the keys each version has, and the SHA-256 digest of the data that version 1.1 added.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Value of the `format` metadata key.
pub const FORMAT_NAME: &str = "bitlogic";
/// The format version this crate writes (1.2 added the spatial layer kinds); it reads every 1.x (1.0 without a
/// digest of the data, 1.1 and later with one).
pub const FORMAT_VERSION: &str = "1.2";
/// The only major version this reader implements.
const MAJOR_VERSION: u32 = 1;
/// The first minor version whose files carry [`DIGEST_KEY`].
const DIGEST_SINCE_MINOR: u32 = 1;
/// The metadata key of the data's digest: 64 lowercase hexadecimal digits of the SHA-256 of every byte after the
/// header.
pub(super) const DIGEST_KEY: &str = "data_sha256";

/// What the metadata holds, checked: the file's version as written and the description's JSON text.
pub(super) struct Checked<'a> {
    pub(super) version: &'a str,
    pub(super) network: &'a str,
}

/// Checks the metadata of a file whose data buffer (every byte after the header) is `data`: the format name, the
/// version, exactly the keys of that version, and the digest where the version has one.
pub(super) fn check<'a>(metadata: &'a HashMap<String, String>, data: &[u8]) -> Result<Checked<'a>> {
    let get = |key: &str| {
        metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::Format(format!("metadata key `{key}` is missing; is this a bitlogic network file?")))
    };
    let format = get("format")?;
    if format != FORMAT_NAME {
        return Err(Error::Format(format!("metadata `format` is {format:?}, expected {FORMAT_NAME:?}")));
    }
    let version = get("format_version")?;
    let minor = minor_version(version)?;
    let has_digest = minor >= DIGEST_SINCE_MINOR;
    for key in metadata.keys() {
        match key.as_str() {
            "format" | "format_version" | "network" => {}
            DIGEST_KEY if has_digest => {}
            DIGEST_KEY => {
                return Err(Error::Format(format!(
                    "metadata key `{DIGEST_KEY}` belongs to format 1.{DIGEST_SINCE_MINOR} and later, but the file says \
                     version {version}"
                )))
            }
            extra => {
                return Err(Error::Format(format!(
                    "unknown metadata key `{extra}` (file version {version}, this reader implements {FORMAT_VERSION})"
                )))
            }
        }
    }
    if has_digest {
        let recorded = metadata.get(DIGEST_KEY).ok_or_else(|| {
            Error::Format(format!(
                "metadata key `{DIGEST_KEY}` is missing: a file of version {version} records the SHA-256 of its data"
            ))
        })?;
        verify_digest(recorded, data)?;
    }
    Ok(Checked { version, network: get("network")? })
}

/// The minor version of a `format_version` of the major version this reader implements. A value not of the form
/// `MAJOR.MINOR` (unsigned decimal integers without leading zeros) is a format error; a version of that form this
/// reader cannot read — another major, or a number past 2^32 - 1, which no version has — is a version error naming
/// both versions.
fn minor_version(version: &str) -> Result<u32> {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    let Some((major, minor)) = version.split_once('.').filter(|(major, minor)| number(major) && number(minor)) else {
        return Err(Error::Format(format!(
            "metadata `format_version` is {version:?}, expected \"MAJOR.MINOR\" (decimal integers without a sign or \
             leading zeros)"
        )));
    };
    match (major.parse::<u32>(), minor.parse::<u32>()) {
        (Ok(MAJOR_VERSION), Ok(minor)) => Ok(minor),
        _ => Err(Error::Version { found: version.to_string(), supported: FORMAT_VERSION }),
    }
}

/// The digest of `data` as [`DIGEST_KEY`] records it.
pub(super) fn digest<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for chunk in chunks {
        hasher.update(chunk);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a recorded digest against the data.
fn verify_digest(recorded: &str, data: &[u8]) -> Result<()> {
    let well_formed = recorded.len() == 64 && recorded.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(Error::Format(format!(
            "metadata `{DIGEST_KEY}` is {recorded:?}, expected 64 lowercase hexadecimal digits"
        )));
    }
    let found = digest([data]);
    if found != recorded {
        return Err(Error::Format(format!(
            "the data is damaged: its SHA-256 is {found}, but metadata `{DIGEST_KEY}` records {recorded}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(minor_version("1.0").unwrap(), 0);
        assert_eq!(minor_version("1.1").unwrap(), 1);
        assert_eq!(minor_version("1.2").unwrap(), 2);
        assert_eq!(minor_version("1.4294967295").unwrap(), u32::MAX);
        for bad in ["1", "1.", ".0", "1.0.0", "a.b", "+1.0", "1.-1", " 1.0", "1.0 ", "01.0", "1.01", "1.00", "١.٠"] {
            assert!(matches!(minor_version(bad), Err(Error::Format(m)) if m.contains("format_version")), "{bad}");
        }
        for unsupported in ["0.9", "2.0", "99999999999.0", "1.4294967296", "1.99999999999999999999", "4294967297.1"] {
            match minor_version(unsupported) {
                Err(e @ Error::Version { .. }) => {
                    let message = e.to_string();
                    assert!(message.contains(unsupported) && message.contains(FORMAT_VERSION), "{message}");
                }
                other => panic!("{unsupported}: {other:?}"),
            }
        }
    }

    #[test]
    fn digest_is_sha256_in_lowercase_hex() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            digest([b"ab".as_slice(), b"c"]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
