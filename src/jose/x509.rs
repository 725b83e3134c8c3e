//! The public key of an X.509 certificate (RFC 5280), to check a JWK's `x5c` against its own
//! key members: a JWKS that says one key in `n`/`e` and another in its certificate is refused
//! rather than trusted either way.
//!
//! Only the path to `subjectPublicKeyInfo` is read — `Certificate` → `tbsCertificate` → past
//! the version, serial number, signature algorithm, issuer, validity and subject — with every
//! length checked against the bytes there are. Nothing else of the certificate is trusted or
//! used: the key's trust comes from the JWKS's origin, not from the certificate's chain.

/// One DER element: its tag, its content, and the whole encoding (tag and length included).
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    encoding: &'a [u8],
}

/// Reads the DER element at the start of `bytes`; the element and what follows it.
fn element(bytes: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let tag = *bytes.first()?;
    let first_length = *bytes.get(1)?;
    let (length, header) = if first_length < 0x80 {
        (usize::from(first_length), 2_usize)
    } else {
        let count = usize::from(first_length & 0x7f);
        // DER: the long form only when needed, at most 4 length bytes here (4 GiB).
        if count == 0 || count > 4 {
            return None;
        }
        let length_bytes = bytes.get(2..count.checked_add(2)?)?;
        let length = length_bytes.iter().try_fold(0_usize, |length, byte| {
            length.checked_mul(256)?.checked_add(usize::from(*byte))
        })?;
        (length, count.checked_add(2)?)
    };
    let end = header.checked_add(length)?;
    let encoding = bytes.get(..end)?;
    let content = encoding.get(header..)?;
    Some((
        Element {
            tag,
            content,
            encoding,
        },
        bytes.get(end..)?,
    ))
}

const SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT Version` of `tbsCertificate`.
const VERSION: u8 = 0xa0;

/// The `subjectPublicKeyInfo` of a DER certificate, as encoded there; `None` if `certificate`
/// is not one.
pub fn subject_public_key_info(certificate: &[u8]) -> Option<&[u8]> {
    let (certificate, rest) = element(certificate)?;
    if certificate.tag != SEQUENCE || !rest.is_empty() {
        return None;
    }
    let (tbs, _) = element(certificate.content)?;
    if tbs.tag != SEQUENCE {
        return None;
    }
    let mut fields = tbs.content;
    let (first, after_first) = element(fields)?;
    if first.tag == VERSION {
        fields = after_first;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        let (_, rest) = element(fields)?;
        fields = rest;
    }
    let (public_key_info, _) = element(fields)?;
    (public_key_info.tag == SEQUENCE).then_some(public_key_info.encoding)
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn truncated_or_malformed_encodings_are_no_certificate() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x05\x01",
            b"\x30\x85\x00\x00\x00\x00\x01",
            b"\x30\x80",
            b"\x30\x00",
            b"\x31\x02\x30\x00",
            b"\x30\x02\x30\x00\x00",
        ] {
            assert_eq!(subject_public_key_info(bad), None, "{bad:?}");
        }
    }
}
