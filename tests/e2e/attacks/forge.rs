//! The generator: turns a [`Spec`] (data in the catalog) into the text of a token.
//!
//! A token is made in stages, each of which a spec can tamper with:
//! 1. header and claims: JSON values (time markers resolved against the clock now), exact
//!    texts, or raw bytes;
//! 2. the two segments, base64url-encoded and then optionally edited ([`SegmentEdit`]): the
//!    signature is computed over the *edited* signing input, so a non-canonical segment is
//!    correctly signed and the filter cannot lean on a signature failure to refuse it;
//! 3. the signature, made by a [`Signer`] and then optionally edited ([`SignatureEdit`]);
//! 4. the whole text, optionally reshaped ([`Shape`]).
//!
//! Some tampering only applies to some tokens (a signature that starts with a zero byte, a
//! segment that contains `-`): the generator then re-mints with a counter in `jti` (or a
//! `nonce` header member) until the token has the property.

use serde_json::{json, Map, Value};

use super::keys::{self, Secret, Signing};
use crate::support::{b64url, TestKey};

pub const MAIN_ISSUER: &str = "https://idp.attacks.test";
pub const ES_ONLY_ISSUER: &str = "https://es-only.attacks.test";
pub const AT_ISSUER: &str = "https://at.attacks.test";
pub const AUDIENCE: &str = "api://attacks";
pub const SUBJECT: &str = "alice";

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(elapsed.as_secs()).unwrap()
}

/// A NumericDate `offset` seconds from the moment the token is minted.
pub fn at(offset: i64) -> Value {
    json!({"$now": offset})
}

/// As [`at`], half a second later: a fractional NumericDate.
pub fn at_fraction(offset: i64) -> Value {
    json!({"$now": offset, "$fraction": true})
}

/// As [`at`], but as a JSON string of digits.
pub fn at_text(offset: i64) -> Value {
    json!({"$now": offset, "$text": true})
}

/// One of the three parts of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Header,
    Payload,
    Signature,
}

/// The content of the header or the payload before encoding.
#[derive(Debug, Clone)]
pub enum Part {
    /// A JSON value; `{"$now": …}` markers become dates.
    Json(Value),
    /// An exact text; `{now}` and `{exp}` become the current date and an hour later.
    Text(String),
    Bytes(Vec<u8>),
}

/// How the signature bytes are made.
#[derive(Debug, Clone)]
pub enum Signer {
    /// A real signature under `alg` by a key.
    Key(Signing, &'static str),
    /// HMAC-SHA-`bits` keyed with a [`Secret`] (algorithm confusion).
    Hmac(u16, Secret),
    /// RSA-PSS with SHA-`bits` and this salt length, by the trusted RSA-2048 key.
    Pss(u16, usize),
    /// These exact bytes (empty: no signature at all).
    Bytes(Vec<u8>),
    /// An integer as a 256-byte RSA signature, relative to the trusted modulus `n`.
    RsaInteger(RsaInteger),
    /// `EMSA-PKCS1-v1_5(SHA-256(input))`: the valid signature under an `e = 1` key.
    RsaE1,
    /// Bleichenbacher's cube-root forgery (valid only for a lenient `e = 3` verifier).
    BleichenbacherE3,
    /// A P-256 `r || s` of chosen scalars; `Valid` takes it from a real signature.
    P256Scalars(Scalar, Scalar),
}

#[derive(Debug, Clone, Copy)]
pub enum RsaInteger {
    Zero,
    One,
    ModulusMinusOne,
    Modulus,
}

#[derive(Debug, Clone, Copy)]
pub enum Scalar {
    Zero,
    /// The group order `n`.
    Order,
    /// `2^256 - 1`.
    Max,
    /// The component of a real signature by the trusted P-256 key.
    Valid,
}

/// An edit of the signature bytes.
#[derive(Debug, Clone)]
pub enum SignatureEdit {
    /// ECDSA: replace `s` by `n - s` (the high form) — or make it low.
    HighS,
    LowS,
    /// ECDSA: ASN.1 DER instead of `r || s`.
    Der,
    /// Drop the last `count` bytes.
    Truncate(usize),
    Append(Vec<u8>),
    Prepend(Vec<u8>),
    /// RSA: `s + n`, still 256 bytes (requires a signature where it fits).
    AddModulus,
    /// RSA: only tokens whose signature starts with `0x00` (searched for).
    RequireLeadingZero,
    /// RSA: drop a leading `0x00` byte (after [`SignatureEdit::RequireLeadingZero`]).
    StripLeadingZero,
    /// Ed25519: `S + L`.
    AddEd25519Order,
    FlipFirstBit,
}

/// An edit of one base64url segment's text.
#[derive(Debug, Clone)]
pub enum SegmentEdit {
    /// Append `=` padding (the part is first made a length that needs it).
    Pad,
    /// The standard alphabet: `-` → `+`, `_` → `/` (searched until the segment has one).
    StandardAlphabet,
    /// Set the last character's unused low bits (the part is first made a length with some).
    UnusedBits,
    /// Insert text at a character position.
    Insert(usize, &'static str),
}

/// An edit of the whole compact text.
#[derive(Debug, Clone)]
pub enum Shape {
    Append(&'static str),
    Prepend(&'static str),
    /// Keep only the first `count` dot-separated segments.
    Keep(usize),
}

/// Everything about one token.
#[derive(Debug, Clone)]
pub struct Spec {
    pub header: Part,
    pub claims: Part,
    pub signer: Signer,
    pub segment_edits: Vec<(Segment, SegmentEdit)>,
    pub signature_edits: Vec<SignatureEdit>,
    pub shape: Vec<Shape>,
    /// The whole token must be exactly this long (padded with a `pad` claim and header member).
    pub length: Option<usize>,
}

/// Standard claims for `issuer`: valid for an hour, for [`AUDIENCE`], subject [`SUBJECT`].
pub fn claims_for(issuer: &str) -> Value {
    json!({"iss": issuer, "aud": AUDIENCE, "sub": SUBJECT, "exp": at(3600), "iat": at(0)})
}

impl Spec {
    /// A valid token for the `main` provider: `alg` by its usual trusted key, header
    /// `{"alg", "typ": "JWT", "kid"}`.
    pub fn valid(alg: &'static str) -> Spec {
        Spec::by(Signing::Fixture(TestKey::for_algorithm(alg)), alg)
    }

    /// A token signed by `key` under `alg`, naming `key`'s `kid`.
    pub fn by(key: Signing, alg: &'static str) -> Spec {
        Spec {
            header: Part::Json(json!({"alg": alg, "typ": "JWT", "kid": key.kid()})),
            claims: Part::Json(claims_for(MAIN_ISSUER)),
            signer: Signer::Key(key, alg),
            segment_edits: Vec::new(),
            signature_edits: Vec::new(),
            shape: Vec::new(),
            length: None,
        }
    }

    /// Sets (or, with `null`, removes) a header member.
    pub fn header(mut self, name: &str, value: Value) -> Spec {
        set_member(&mut self.header, name, value);
        self
    }

    /// Sets (or, with `null`, removes) a claim. To set a claim to JSON `null`, use
    /// [`Spec::claim_null`].
    pub fn claim(mut self, name: &str, value: Value) -> Spec {
        set_member(&mut self.claims, name, value);
        self
    }

    pub fn claim_null(mut self, name: &str) -> Spec {
        if let Part::Json(Value::Object(object)) = &mut self.claims {
            object.insert(name.to_owned(), Value::Null);
        }
        self
    }

    pub fn issuer(self, issuer: &str) -> Spec {
        self.claim("iss", json!(issuer))
    }

    pub fn header_part(mut self, part: Part) -> Spec {
        self.header = part;
        self
    }

    pub fn claims_part(mut self, part: Part) -> Spec {
        self.claims = part;
        self
    }

    pub fn signer(mut self, signer: Signer) -> Spec {
        self.signer = signer;
        self
    }

    pub fn edit(mut self, segment: Segment, edit: SegmentEdit) -> Spec {
        self.segment_edits.push((segment, edit));
        self
    }

    pub fn signature(mut self, edit: SignatureEdit) -> Spec {
        self.signature_edits.push(edit);
        self
    }

    pub fn shape(mut self, shape: Shape) -> Spec {
        self.shape.push(shape);
        self
    }

    pub fn length(mut self, length: usize) -> Spec {
        self.length = Some(length);
        self
    }

    /// The token text, minted now.
    pub fn mint(&self) -> String {
        let now = now();
        if let Some(length) = self.length {
            return self.mint_to_length(now, length);
        }
        let search = self.needs_search();
        for attempt in 0..20_000u32 {
            let counter = search.then_some(attempt);
            if let Some(token) = self.try_mint(now, counter, 0, 0) {
                return token;
            }
            assert!(search, "a token without a search cannot fail to mint");
        }
        panic!("no token with the required property in 20 000 attempts: {self:?}")
    }

    fn needs_search(&self) -> bool {
        self.signature_edits.iter().any(|edit| {
            matches!(
                edit,
                SignatureEdit::RequireLeadingZero | SignatureEdit::AddModulus
            )
        }) || self
            .segment_edits
            .iter()
            .any(|(_, edit)| matches!(edit, SegmentEdit::StandardAlphabet))
    }

    /// Pads the claims (3 bytes of JSON per 4 characters of token) and, for the lengths that
    /// base64url cannot reach by one part alone, the header.
    fn mint_to_length(&self, now: i64, length: usize) -> String {
        let unpadded = self.try_mint(now, None, 0, 0).unwrap().len();
        let estimate = length.saturating_sub(unpadded) * 3 / 4;
        for header_pad in 0..4 {
            for claim_pad in estimate.saturating_sub(32)..estimate + 32 {
                let token = self.try_mint(now, None, header_pad, claim_pad).unwrap();
                if token.len() == length {
                    return token;
                }
            }
        }
        panic!("cannot mint a token of exactly {length} bytes")
    }

    /// One attempt; `None` when the token lacks a property the edits require.
    fn try_mint(
        &self,
        now: i64,
        counter: Option<u32>,
        header_pad: usize,
        claim_pad: usize,
    ) -> Option<String> {
        let mut header = self.header.clone();
        let mut claims = self.claims.clone();
        if let Some(counter) = counter {
            // `???` encodes to a `_` at every alignment: `SegmentEdit::StandardAlphabet`
            // finds one at once.
            // The header counter only matters for edits of the header segment.
            if self
                .segment_edits
                .iter()
                .any(|(s, _)| *s == Segment::Header)
            {
                set_member(&mut header, "nonce", json!(format!("???{counter}")));
            }
            set_member(&mut claims, "jti", json!(format!("???{counter}")));
        }
        if header_pad > 0 {
            set_member(&mut header, "pad", json!(" ".repeat(header_pad)));
        }
        if claim_pad > 0 {
            set_member(&mut claims, "pad", json!("x".repeat(claim_pad)));
        }
        let mut header = part_bytes(&header, now);
        let mut claims = part_bytes(&claims, now);
        for (segment, edit) in &self.segment_edits {
            if matches!(edit, SegmentEdit::Pad | SegmentEdit::UnusedBits) {
                match segment {
                    Segment::Header => make_length_uneven(&mut header),
                    Segment::Payload => make_length_uneven(&mut claims),
                    Segment::Signature => {}
                }
            }
        }
        let mut header = b64url(&header);
        let mut payload = b64url(&claims);
        for (segment, edit) in &self.segment_edits {
            match segment {
                Segment::Header => apply_segment_edit(&mut header, edit)?,
                Segment::Payload => apply_segment_edit(&mut payload, edit)?,
                Segment::Signature => {}
            }
        }
        let signing_input = format!("{header}.{payload}");
        let mut signature = self.sign(signing_input.as_bytes());
        for edit in &self.signature_edits {
            signature = apply_signature_edit(signature, edit)?;
        }
        let mut signature = b64url(&signature);
        for (segment, edit) in &self.segment_edits {
            if *segment == Segment::Signature {
                apply_segment_edit(&mut signature, edit)?;
            }
        }
        let mut token = format!("{signing_input}.{signature}");
        for shape in &self.shape {
            token = match shape {
                Shape::Append(text) => format!("{token}{text}"),
                Shape::Prepend(text) => format!("{text}{token}"),
                Shape::Keep(count) => token.split('.').take(*count).collect::<Vec<_>>().join("."),
            };
        }
        Some(token)
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match &self.signer {
            Signer::Key(key, alg) => key.sign(alg, input),
            Signer::Hmac(bits, secret) => keys::hmac(*bits, &secret.bytes(), input),
            Signer::Pss(bits, salt) => keys::pss_signature(*bits, *salt, input),
            Signer::Bytes(bytes) => bytes.clone(),
            Signer::RsaInteger(integer) => {
                let n = keys::rsa2048_modulus();
                let value = match integer {
                    RsaInteger::Zero => rsa::BigUint::from(0u32),
                    RsaInteger::One => rsa::BigUint::from(1u32),
                    RsaInteger::ModulusMinusOne => n - 1u32,
                    RsaInteger::Modulus => n,
                };
                keys::fixed_width(&value, 256)
            }
            Signer::RsaE1 => keys::pkcs1_encoded_message(input),
            Signer::BleichenbacherE3 => keys::bleichenbacher_e3_forgery(input),
            Signer::P256Scalars(r, s) => {
                let valid = TestKey::P256.sign("ES256", input);
                let scalar = |scalar: &Scalar, half: &[u8]| match scalar {
                    Scalar::Zero => vec![0; 32],
                    Scalar::Order => keys::hex(keys::P256_ORDER),
                    Scalar::Max => vec![0xff; 32],
                    Scalar::Valid => half.to_vec(),
                };
                let mut signature = scalar(r, &valid[..32]);
                signature.extend(scalar(s, &valid[32..]));
                signature
            }
        }
    }
}

fn set_member(part: &mut Part, name: &str, value: Value) {
    let Part::Json(Value::Object(object)) = part else {
        panic!("{name}: only JSON object parts have members");
    };
    if value.is_null() {
        object.remove(name);
    } else {
        object.insert(name.to_owned(), value);
    }
}

fn part_bytes(part: &Part, now: i64) -> Vec<u8> {
    match part {
        Part::Json(value) => resolve_times(value, now).to_string().into_bytes(),
        Part::Text(text) => text
            .replace("{now}", &now.to_string())
            .replace("{exp}", &(now + 3600).to_string())
            .into_bytes(),
        Part::Bytes(bytes) => bytes.clone(),
    }
}

/// Replaces every `{"$now": offset, …}` marker by the date it stands for.
fn resolve_times(value: &Value, now: i64) -> Value {
    match value {
        Value::Object(object) => {
            if let Some(offset) = object.get("$now").and_then(Value::as_i64) {
                let date = now + offset;
                if object.contains_key("$text") {
                    return json!(date.to_string());
                }
                if object.contains_key("$fraction") {
                    return json!(date as f64 + 0.5);
                }
                return json!(date);
            }
            let resolved: Map<String, Value> = object
                .iter()
                .map(|(name, member)| (name.clone(), resolve_times(member, now)))
                .collect();
            Value::Object(resolved)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| resolve_times(i, now)).collect()),
        other => other.clone(),
    }
}

/// Appends JSON whitespace until the encoding has a partial final group (and so unused bits
/// and padding): the length must not be a multiple of 3.
fn make_length_uneven(bytes: &mut Vec<u8>) {
    while bytes.len() % 3 == 0 {
        bytes.push(b' ');
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn apply_segment_edit(segment: &mut String, edit: &SegmentEdit) -> Option<()> {
    match edit {
        SegmentEdit::Pad => {
            while segment.len() % 4 != 0 {
                segment.push('=');
            }
        }
        SegmentEdit::StandardAlphabet => {
            if !segment.contains(['-', '_']) {
                return None;
            }
            *segment = segment.replace('-', "+").replace('_', "/");
        }
        SegmentEdit::UnusedBits => {
            let unused_bits = match segment.len() % 4 {
                2 => 4,
                3 => 2,
                _ => panic!("segment of {} characters has no unused bits", segment.len()),
            };
            let last = segment.pop().unwrap();
            let index = ALPHABET
                .iter()
                .position(|&c| char::from(c) == last)
                .unwrap();
            assert_eq!(index % (1 << unused_bits), 0, "canonical to begin with");
            segment.push(char::from(ALPHABET[index | 1]));
        }
        SegmentEdit::Insert(at, text) => segment.insert_str(*at, text),
    }
    Some(())
}

fn apply_signature_edit(mut signature: Vec<u8>, edit: &SignatureEdit) -> Option<Vec<u8>> {
    Some(match edit {
        SignatureEdit::HighS => {
            let high = keys::ecdsa_with_s(&signature, true);
            assert!(keys::ecdsa_s_is_high(&high));
            high
        }
        SignatureEdit::LowS => keys::ecdsa_with_s(&signature, false),
        SignatureEdit::Der => keys::ecdsa_der(&signature),
        SignatureEdit::Truncate(count) => {
            signature.truncate(signature.len() - count);
            signature
        }
        SignatureEdit::Append(bytes) => {
            signature.extend_from_slice(bytes);
            signature
        }
        SignatureEdit::Prepend(bytes) => {
            let mut prefixed = bytes.clone();
            prefixed.extend(signature);
            prefixed
        }
        SignatureEdit::AddModulus => {
            let sum = rsa::BigUint::from_bytes_be(&signature) + keys::rsa2048_modulus();
            if sum.bits() > 2048 {
                return None;
            }
            keys::fixed_width(&sum, 256)
        }
        SignatureEdit::RequireLeadingZero => {
            if signature.first() != Some(&0) {
                return None;
            }
            signature
        }
        SignatureEdit::StripLeadingZero => {
            assert_eq!(signature.remove(0), 0);
            signature
        }
        SignatureEdit::AddEd25519Order => keys::ed25519_add_order(&signature),
        SignatureEdit::FlipFirstBit => {
            signature[0] ^= 0x01;
            signature
        }
    })
}
