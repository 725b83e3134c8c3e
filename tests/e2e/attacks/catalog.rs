//! The attack catalog: every case is a row — a group, a name, how to craft the token
//! ([`Spec`], see `forge.rs`), how to send it, and the exact outcome expected through Envoy.
//!
//! Expectations are the filter's documented behaviour (README "What is verified"): the status
//! and the machine-readable `reason` of the body, or `allow` with what the upstream must (not)
//! receive. A handful of cases never reach the filter (Envoy's own codec refuses them); they
//! expect Envoy's status and no filter verdict.

use serde_json::{json, Value};

use super::forge::{
    at, at_fraction, at_text, claims_for, Part, RsaInteger, Scalar, Segment, SegmentEdit, Shape,
    SignatureEdit, Signer, Spec, AT_ISSUER, AUDIENCE, ES_ONLY_ISSUER, MAIN_ISSUER, SUBJECT,
};
use super::keys::{self, Secret, Signing};
use crate::support::{b64url, TestKey};

/// The default route: no rule matches it, so a token from any provider is required.
pub const PATH: &str = "/attacks";
/// The route only the `es_only` provider (ES256 only) may use.
pub const ES_ONLY_PATH: &str = "/es-only/attacks";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Structure,
    Algorithms,
    KeyResolution,
    Jwks,
    Signatures,
    Header,
    Claims,
    Request,
}

impl Group {
    pub const ALL: [Group; 8] = [
        Group::Structure,
        Group::Algorithms,
        Group::KeyResolution,
        Group::Jwks,
        Group::Signatures,
        Group::Header,
        Group::Claims,
        Group::Request,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Group::Structure => "structure/encoding",
            Group::Algorithms => "algorithms",
            Group::KeyResolution => "key resolution",
            Group::Jwks => "JWKS (configuration time)",
            Group::Signatures => "signature arithmetic",
            Group::Header => "header semantics",
            Group::Claims => "claims",
            Group::Request => "request level",
        }
    }
}

/// What must happen to a request.
#[derive(Debug, Clone)]
pub enum Expect {
    /// `200` from the upstream, which got the request once. `subject`: the access log's
    /// subject (`-` for none); `None` skips the access-log check. `headers`: what the upstream
    /// must have received (`None`: the header is absent).
    Allow {
        subject: Option<&'static str>,
        headers: Vec<(&'static str, Option<&'static str>)>,
    },
    /// The filter's denial for `reason` (the status follows from it), naming `claim`.
    Deny {
        reason: &'static str,
        claim: Option<&'static str>,
    },
    /// Envoy answers with this status before the filter sees the request.
    Envoy(u16),
}

impl Expect {
    /// The one-line form the report compares: `200 allow`, `401 expired`, `431 envoy`.
    pub fn summary(&self) -> String {
        match self {
            Expect::Allow { .. } => "200 allow".to_owned(),
            Expect::Deny { reason, claim } => {
                let claim = claim.map(|claim| format!("({claim})")).unwrap_or_default();
                format!("{} {reason}{claim}", status_of(reason))
            }
            Expect::Envoy(status) => format!("{status} envoy"),
        }
    }
}

/// The status the filter answers a denial with (README "Responses").
pub fn status_of(reason: &str) -> u16 {
    match reason {
        "multiple_tokens" | "unnormalized_path" => 400,
        "keys_unavailable" => 503,
        _ => 401,
    }
}

/// How the token of a case is made.
#[derive(Debug, Clone)]
pub enum Token {
    Spec(Box<Spec>),
    /// A fixed text.
    Text(String),
    /// A spec's token, rewritten (e.g. into the JWS JSON serialization).
    Rewritten(Box<Spec>, fn(&str) -> String),
}

impl Token {
    pub fn mint(&self) -> String {
        match self {
            Token::Spec(spec) => spec.mint(),
            Token::Text(text) => text.clone(),
            Token::Rewritten(spec, rewrite) => rewrite(&spec.mint()),
        }
    }
}

pub struct Case {
    pub group: Group,
    pub name: String,
    pub token: Token,
    pub path: &'static str,
    /// Request headers; `{token}` in a value is replaced by the token.
    pub headers: Vec<(&'static str, String)>,
    pub expect: Expect,
    /// The case sits one second from a time limit: mint and send it early in a second, so the
    /// proxy reads the same clock second as the generator.
    pub aligned: bool,
}

impl Case {
    fn new(group: Group, name: &str, token: Token, expect: Expect) -> Case {
        Case {
            group,
            name: name.to_owned(),
            token,
            path: PATH,
            headers: vec![("authorization", "Bearer {token}".to_owned())],
            expect,
            aligned: false,
        }
    }

    fn path(mut self, path: &'static str) -> Case {
        self.path = path;
        self
    }

    fn headers(mut self, headers: &[(&'static str, &str)]) -> Case {
        self.headers = headers
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect();
        self
    }

    fn aligned(mut self) -> Case {
        self.aligned = true;
        self
    }
}

pub fn allow() -> Expect {
    Expect::Allow {
        subject: Some(SUBJECT),
        headers: Vec::new(),
    }
}

fn allow_as(subject: &'static str) -> Expect {
    Expect::Allow {
        subject: Some(subject),
        headers: Vec::new(),
    }
}

fn allow_forwarding(
    subject: Option<&'static str>,
    headers: &[(&'static str, Option<&'static str>)],
) -> Expect {
    Expect::Allow {
        subject,
        headers: headers.to_vec(),
    }
}

pub fn deny(reason: &'static str) -> Expect {
    Expect::Deny {
        reason,
        claim: None,
    }
}

fn deny_claim(reason: &'static str, claim: &'static str) -> Expect {
    Expect::Deny {
        reason,
        claim: Some(claim),
    }
}

/// Builds the rows of one group.
struct Rows {
    group: Group,
    cases: Vec<Case>,
}

impl Rows {
    fn new(group: Group) -> Rows {
        Rows {
            group,
            cases: Vec::new(),
        }
    }

    fn spec(&mut self, name: &str, spec: Spec, expect: Expect) -> &mut Case {
        self.case(name, Token::Spec(Box::new(spec)), expect)
    }

    fn case(&mut self, name: &str, token: Token, expect: Expect) -> &mut Case {
        self.cases.push(Case::new(self.group, name, token, expect));
        self.cases.last_mut().unwrap()
    }

    fn edit(&mut self, change: impl FnOnce(Case) -> Case) {
        let last = self.cases.pop().unwrap();
        self.cases.push(change(last));
    }
}

/// Where things live at run time.
pub struct Context {
    /// A loopback URL no connection may reach (see `canary.rs`).
    pub canary_url: String,
}

/// Every request case, group by group.
pub fn catalog(context: &Context) -> Vec<Case> {
    [
        structure(),
        algorithms(),
        key_resolution(context),
        jwks(),
        signatures(),
        header(),
        claims(),
        request(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

const ES256_HEADER: &str = r#"{"alg":"ES256","typ":"JWT","kid":"p256"}"#;

/// The standard claims as exact text (`{exp}`, `{now}` filled in at minting).
fn claims_text() -> String {
    claims_text_with("")
}

/// [`claims_text`] with `members` (`,"name":value…`) added at the end, verbatim.
fn claims_text_with(members: &str) -> String {
    format!(
        r#"{{"iss":"{MAIN_ISSUER}","aud":"{AUDIENCE}","sub":"{SUBJECT}","exp":{{exp}},"iat":{{now}}{members}}}"#
    )
}

/// A valid ES256 token whose claims are this exact text.
fn es256_claims_text(text: &str) -> Spec {
    Spec::valid("ES256").claims_part(Part::Text(text.to_owned()))
}

fn es256_header_text(text: &str) -> Spec {
    Spec::valid("ES256").header_part(Part::Text(text.to_owned()))
}

/// A payload with a claim nested `depth` arrays deep.
fn nested_claims(depth: usize) -> String {
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    claims_text_with(&format!(",\"deep\":{nested}"))
}

fn structure() -> Vec<Case> {
    let mut rows = Rows::new(Group::Structure);
    rows.spec("valid ES256 token (control)", Spec::valid("ES256"), allow());
    rows.spec(
        "1 segment (header only)",
        Spec::valid("ES256").shape(Shape::Keep(1)),
        deny("malformed_token"),
    );
    rows.spec(
        "2 segments (signature dropped with its dot)",
        Spec::valid("ES256").shape(Shape::Keep(2)),
        deny("malformed_token"),
    );
    rows.spec(
        "3 segments, empty signature (signature stripped, dot kept)",
        Spec::valid("ES256").signer(Signer::Bytes(Vec::new())),
        deny("bad_signature"),
    );
    rows.spec(
        "4 segments",
        Spec::valid("ES256").shape(Shape::Append(".e30")),
        deny("malformed_token"),
    );
    rows.spec(
        "trailing dot (4th segment empty)",
        Spec::valid("ES256").shape(Shape::Append(".")),
        deny("malformed_token"),
    );
    rows.spec(
        "leading dot",
        Spec::valid("ES256").shape(Shape::Prepend(".")),
        deny("malformed_token"),
    );
    rows.spec(
        "5 segments (a JWS with two more)",
        Spec::valid("ES256").shape(Shape::Append(".e30.e30")),
        deny("malformed_token"),
    );
    let jwe_header = b64url(br#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa-2048"}"#);
    rows.case(
        "JWE compact, 5 segments (RSA-OAEP + A256GCM)",
        Token::Text(format!(
            "{jwe_header}.{}.{}.{}.{}",
            b64url(&[7; 256]),
            b64url(&[1; 12]),
            b64url(claims_text().as_bytes()),
            b64url(&[2; 16])
        )),
        deny("malformed_token"),
    );
    rows.case(
        "JWE compact with alg dir (empty encrypted key)",
        Token::Text(format!(
            "{}..{}.{}.{}",
            b64url(br#"{"alg":"dir","enc":"A128CBC-HS256"}"#),
            b64url(&[1; 16]),
            b64url(b"ciphertext"),
            b64url(&[2; 16])
        )),
        deny("malformed_token"),
    );
    rows.case(
        "JWS JSON serialization, flattened",
        Token::Rewritten(Box::new(Spec::valid("ES256")), |token| {
            let parts: Vec<&str> = token.split('.').collect();
            format!(
                r#"{{"protected":"{}","payload":"{}","signature":"{}"}}"#,
                parts[0], parts[1], parts[2]
            )
        }),
        deny("malformed_token"),
    );
    rows.case(
        "JWS JSON serialization, general",
        Token::Rewritten(Box::new(Spec::valid("ES256")), |token| {
            let parts: Vec<&str> = token.split('.').collect();
            format!(
                r#"{{"payload":"{}","signatures":[{{"protected":"{}","signature":"{}"}}]}}"#,
                parts[1], parts[0], parts[2]
            )
        }),
        deny("malformed_token"),
    );
    rows.case(
        "JWS JSON serialization, base64url as one segment",
        Token::Rewritten(Box::new(Spec::valid("ES256")), |token| {
            let parts: Vec<&str> = token.split('.').collect();
            b64url(
                json!({"protected": parts[0], "payload": parts[1], "signature": parts[2]})
                    .to_string()
                    .as_bytes(),
            )
        }),
        deny("malformed_token"),
    );
    rows.case(
        "empty token (`Bearer ` only)",
        Token::Text(String::new()),
        deny("missing_token"),
    );
    rows.case(
        "dots only (`..`)",
        Token::Text("..".to_owned()),
        deny("malformed_json"),
    );
    for (segment, name) in [
        (Segment::Header, "header"),
        (Segment::Payload, "payload"),
        (Segment::Signature, "signature"),
    ] {
        rows.spec(
            &format!("`=` padding on the {name}"),
            Spec::valid("ES256").edit(segment, SegmentEdit::Pad),
            deny("non_canonical_base64"),
        );
        rows.spec(
            &format!("`+`/`/` (standard alphabet) in the {name}"),
            Spec::valid("ES256").edit(segment, SegmentEdit::StandardAlphabet),
            deny("non_canonical_base64"),
        );
        rows.spec(
            &format!("non-zero unused bits in the {name}"),
            Spec::valid("ES256").edit(segment, SegmentEdit::UnusedBits),
            deny("non_canonical_base64"),
        );
    }
    rows.spec(
        "space inside the payload segment",
        Spec::valid("ES256").edit(Segment::Payload, SegmentEdit::Insert(10, " ")),
        deny("non_canonical_base64"),
    );
    rows.spec(
        "space after a dot",
        Spec::valid("ES256").edit(Segment::Payload, SegmentEdit::Insert(0, " ")),
        deny("non_canonical_base64"),
    );
    rows.spec(
        "tab inside the signature segment",
        Spec::valid("ES256").edit(Segment::Signature, SegmentEdit::Insert(5, "\t")),
        deny("non_canonical_base64"),
    );
    rows.spec(
        "spaces and tabs around the token (trimmed)",
        Spec::valid("ES256"),
        allow(),
    );
    rows.edit(|case| case.headers(&[("authorization", "Bearer    {token} \t ")]));
    rows.spec(
        "pretty-printed header JSON (whitespace is JSON)",
        es256_header_text("{\n  \"alg\": \"ES256\",\n  \"typ\": \"JWT\",\n  \"kid\": \"p256\"\n}"),
        allow(),
    );
    rows.spec(
        "stray `A` after the signature (decodes to 65 bytes)",
        Spec::valid("ES256").shape(Shape::Append("A")),
        deny("bad_signature"),
    );
    for stray in ["B", "=", ";", "%3D", "\\"] {
        rows.spec(
            &format!("stray `{stray}` after the signature"),
            Spec::valid("ES256").shape(Shape::Append(stray)),
            deny("non_canonical_base64"),
        );
    }
    rows.spec(
        "UTF-8 BOM before the header JSON",
        Spec::valid("ES256").header_part(Part::Bytes(
            [b"\xef\xbb\xbf".as_slice(), ES256_HEADER.as_bytes()].concat(),
        )),
        deny("malformed_json"),
    );
    rows.spec(
        "UTF-8 BOM before the payload JSON",
        es256_claims_text(&format!("\u{feff}{}", claims_text())),
        deny("malformed_json"),
    );
    rows.spec("UTF-8 BOM before the token", Spec::valid("ES256"), {
        deny("non_canonical_base64")
    });
    rows.edit(|case| case.headers(&[("authorization", "Bearer \u{feff}{token}")]));
    for (text, what) in [
        ("[]", "an array"),
        ("\"ES256\"", "a string"),
        ("null", "null"),
        ("1", "a number"),
        ("", "empty"),
    ] {
        rows.spec(
            &format!("header JSON is {what}"),
            es256_header_text(text),
            deny("malformed_json"),
        );
        rows.spec(
            &format!("payload JSON is {what}"),
            es256_claims_text(text),
            deny("malformed_json"),
        );
    }
    rows.spec(
        "payload is a JSON string holding the claims",
        es256_claims_text(&serde_json::to_string(&claims_text()).unwrap()),
        deny("malformed_json"),
    );
    rows.spec(
        "header is not UTF-8",
        Spec::valid("ES256")
            .header_part(Part::Bytes(b"{\"alg\":\"ES256\",\"x\":\"\xff\"}".to_vec())),
        deny("malformed_json"),
    );
    rows.spec(
        "payload with a lone surrogate escape",
        es256_claims_text(&claims_text_with(",\"name\":\"\\ud800\"")),
        deny("malformed_json"),
    );
    rows.spec(
        "payload followed by garbage",
        es256_claims_text(&format!("{}x", claims_text())),
        deny("malformed_json"),
    );
    rows.spec(
        "payload of two JSON objects",
        es256_claims_text(&format!("{}{{}}", claims_text())),
        deny("malformed_json"),
    );
    rows.spec(
        "payload with a comment",
        es256_claims_text(&format!("/* admin */{}", claims_text())),
        deny("malformed_json"),
    );
    rows.spec(
        "payload with trailing whitespace (valid JSON)",
        es256_claims_text(&format!("{} \n", claims_text())),
        allow(),
    );
    rows.spec(
        "duplicate `alg` in the header (ES256, then none)",
        es256_header_text(r#"{"alg":"ES256","typ":"JWT","kid":"p256","alg":"none"}"#),
        deny("duplicate_json_member"),
    );
    rows.spec(
        "duplicate `kid` in the header",
        es256_header_text(r#"{"alg":"ES256","kid":"attacker","typ":"JWT","kid":"p256"}"#),
        deny("duplicate_json_member"),
    );
    rows.spec(
        "duplicate `sub` in the payload",
        es256_claims_text(&claims_text_with(",\"sub\":\"admin\"")),
        deny("duplicate_json_member"),
    );
    rows.spec(
        "duplicate `exp` in the payload",
        es256_claims_text(&claims_text_with(",\"exp\":99999999999")),
        deny("duplicate_json_member"),
    );
    rows.spec(
        "duplicate member in a nested claim object",
        es256_claims_text(&claims_text_with(
            ",\"realm_access\":{\"roles\":[\"user\"],\"roles\":[\"admin\"]}",
        )),
        deny("duplicate_json_member"),
    );
    rows.spec(
        "duplicate `sub` spelled with an escape (`s\\u0075b`)",
        es256_claims_text(&claims_text_with(",\"s\\u0075b\":\"admin\"")),
        deny("duplicate_json_member"),
    );
    rows.spec(
        "`sub` and `Sub` (not duplicates: names are case-sensitive)",
        Spec::valid("ES256").claim("Sub", json!("admin")),
        allow(),
    );
    rows.spec(
        "token of exactly max_token_bytes (16384)",
        Spec::valid("ES256").length(16_384),
        allow(),
    );
    rows.spec(
        "token of max_token_bytes + 1",
        Spec::valid("ES256").length(16_385),
        deny("token_too_large"),
    );
    rows.spec(
        "20 KiB token",
        Spec::valid("ES256").claim("pad", json!("x".repeat(20 * 1024))),
        deny("token_too_large"),
    );
    rows.spec(
        "64 KiB token (over Envoy's 60 KiB header limit)",
        Spec::valid("ES256").claim("pad", json!("x".repeat(64 * 1024))),
        Expect::Envoy(431),
    );
    rows.spec(
        "claim nested 100 deep (within the parser's limit)",
        es256_claims_text(&nested_claims(100)),
        allow(),
    );
    rows.spec(
        "claim nested 200 deep",
        es256_claims_text(&nested_claims(200)),
        deny("malformed_json"),
    );
    rows.spec(
        "claim nested 5000 deep",
        es256_claims_text(&nested_claims(5000)),
        deny("malformed_json"),
    );
    rows.spec(
        "header member nested 300 objects deep",
        es256_header_text(&format!(
            "{{\"alg\":\"ES256\",\"kid\":\"p256\",\"x\":{}1{}}}",
            "{\"a\":".repeat(300),
            "}".repeat(300)
        )),
        deny("malformed_json"),
    );
    rows.cases
}

fn algorithms() -> Vec<Case> {
    let mut rows = Rows::new(Group::Algorithms);
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ] {
        rows.spec(&format!("valid {alg} (control)"), Spec::valid(alg), allow());
    }
    for none in ["none", "None", "NONE", "nOnE"] {
        rows.spec(
            &format!("alg `{none}`, empty signature"),
            Spec::valid("ES256")
                .header("alg", json!(none))
                .header("kid", Value::Null)
                .signer(Signer::Bytes(Vec::new())),
            deny("unsupported_algorithm"),
        );
        rows.spec(
            &format!("alg `{none}` with a valid ES256 signature"),
            Spec::valid("ES256").header("alg", json!(none)),
            deny("unsupported_algorithm"),
        );
    }
    for (bits, secret, what) in [
        (
            256,
            Secret::RsaPemWithNewline,
            "RSA public key PEM with trailing newline",
        ),
        (
            256,
            Secret::RsaPemWithoutNewline,
            "RSA public key PEM without trailing newline",
        ),
        (256, Secret::RsaPkcs1Pem, "RSA PKCS#1 PEM"),
        (256, Secret::RsaDer, "RSA public key DER"),
        (256, Secret::RsaJwkText, "RSA JWK text"),
        (384, Secret::RsaPemWithNewline, "RSA public key PEM"),
        (512, Secret::RsaPemWithNewline, "RSA public key PEM"),
        (384, Secret::RsaDer, "RSA public key DER"),
        (512, Secret::RsaJwkText, "RSA JWK text"),
    ] {
        rows.spec(
            &format!("HS{bits} keyed with the {what} (CVE-2015-9235)"),
            Spec::valid("RS256")
                .header("alg", json!(format!("HS{bits}")))
                .signer(Signer::Hmac(bits, secret)),
            deny("unsupported_algorithm"),
        );
    }
    rows.spec(
        "HS256 keyed with the P-256 public key PEM, kid p256",
        Spec::valid("ES256")
            .header("alg", json!("HS256"))
            .signer(Signer::Hmac(256, Secret::P256Pem)),
        deny("unsupported_algorithm"),
    );
    rows.spec(
        "HS256 keyed with the oct key the set publishes, kid oct",
        Spec::valid("ES256")
            .header("alg", json!("HS256"))
            .header("kid", json!("oct"))
            .signer(Signer::Hmac(256, Secret::OctKey)),
        deny("unsupported_algorithm"),
    );
    rows.spec(
        "HS256 with an empty key, no kid",
        Spec::valid("ES256")
            .header("alg", json!("HS256"))
            .header("kid", Value::Null)
            .signer(Signer::Hmac(256, Secret::Empty)),
        deny("unsupported_algorithm"),
    );
    for alg in ["RS256", "PS256", "ES384", "EdDSA"] {
        rows.spec(
            &format!("{alg} on a provider that allows only ES256"),
            Spec::valid(alg).issuer(ES_ONLY_ISSUER),
            deny("algorithm_not_allowed"),
        );
        rows.edit(|case| case.path(ES_ONLY_PATH));
    }
    rows.spec(
        "ES256 on the ES256-only provider (control)",
        Spec::valid("ES256").issuer(ES_ONLY_ISSUER),
        allow(),
    );
    rows.edit(|case| case.path(ES_ONLY_PATH));
    for (signed, claimed) in [
        ("PS256", "RS256"),
        ("RS256", "RS512"),
        ("PS256", "PS384"),
        ("RS512", "PS512"),
    ] {
        rows.spec(
            &format!("{signed} signature labelled {claimed}"),
            Spec::valid(signed).header("alg", json!(claimed)),
            deny("bad_signature"),
        );
    }
    rows.spec(
        "ES384 on the P-256 key (kid p256)",
        Spec::by(Signing::AttackerP384, "ES384").header("kid", json!("p256")),
        deny("no_compatible_key"),
    );
    rows.spec(
        "ES256 signature labelled ES384, kid p256",
        Spec::valid("ES256").header("alg", json!("ES384")),
        deny("no_compatible_key"),
    );
    rows.spec(
        "ES256 signature labelled ES384, kid p384",
        Spec::valid("ES256")
            .header("alg", json!("ES384"))
            .header("kid", json!("p384")),
        deny("bad_signature"),
    );
    rows.spec(
        "ES256 on the RSA key (kid rsa-2048)",
        Spec::valid("ES256").header("kid", json!("rsa-2048")),
        deny("no_compatible_key"),
    );
    rows.spec(
        "EdDSA on the RSA key (kid rsa-2048)",
        Spec::valid("EdDSA").header("kid", json!("rsa-2048")),
        deny("no_compatible_key"),
    );
    rows.spec(
        "RS256 on the Ed25519 key (kid ed25519)",
        Spec::valid("RS256").header("kid", json!("ed25519")),
        deny("no_compatible_key"),
    );
    for variant in [
        "rs256",
        "Rs256",
        "RS256 ",
        " RS256",
        "RS256\u{0}",
        "RS256\n",
        "RS 256",
        "RS-256",
        "RSA256",
        "ЯS256",
        "EDDSA",
        "Ed25519",
        "ES512",
        "ES256K",
        "RSA-OAEP",
        "",
    ] {
        rows.spec(
            &format!("alg {variant:?} (RS256 signature)"),
            Spec::valid("RS256").header("alg", json!(variant)),
            deny("unsupported_algorithm"),
        );
    }
    for (what, value) in [
        ("missing", Value::Null),
        ("a number", json!(256)),
        ("an array", json!(["RS256"])),
        ("an object", json!({"name": "RS256"})),
        ("true", json!(true)),
    ] {
        rows.spec(
            &format!("alg {what}"),
            Spec::valid("RS256").header("alg", value),
            deny("malformed_header"),
        );
    }
    rows.spec(
        "alg JSON null",
        es256_header_text(r#"{"alg":null,"typ":"JWT","kid":"p256"}"#),
        deny("malformed_header"),
    );
    rows.cases
}

fn key_resolution(context: &Context) -> Vec<Case> {
    let mut rows = Rows::new(Group::KeyResolution);
    let attacker = Signing::AttackerP256;
    let attacker_jwk = attacker.jwk();
    let no_kid = |spec: Spec| spec.header("kid", Value::Null);
    rows.spec(
        "embedded `jwk` (attacker's key), no kid (CVE-2018-0114)",
        no_kid(Spec::by(attacker, "ES256")).header("jwk", attacker_jwk.clone()),
        deny("bad_signature"),
    );
    rows.spec(
        "embedded `jwk`, kid naming it",
        Spec::by(attacker, "ES256").header("jwk", attacker_jwk.clone()),
        deny("unknown_key_id"),
    );
    rows.spec(
        "embedded `jwk`, kid of a trusted key",
        Spec::by(attacker, "ES256")
            .header("jwk", attacker_jwk)
            .header("kid", json!("p256")),
        deny("bad_signature"),
    );
    let link_local = "http://169.254.169.254/latest/meta-data/jwks.json";
    for member in ["jku", "x5u"] {
        rows.spec(
            &format!("`{member}` at a loopback listener, kid naming its key"),
            Spec::by(attacker, "ES256").header(member, json!(context.canary_url)),
            deny("unknown_key_id"),
        );
        rows.spec(
            &format!("`{member}` at a loopback listener, no kid"),
            no_kid(Spec::by(attacker, "ES256")).header(member, json!(context.canary_url)),
            deny("bad_signature"),
        );
        rows.spec(
            &format!("`{member}` at a link-local address (cloud metadata)"),
            Spec::by(attacker, "ES256").header(member, json!(link_local)),
            deny("unknown_key_id"),
        );
    }
    let certificate = keys::attacker_certificate_der();
    let x5c = json!([base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        &certificate
    )]);
    rows.spec(
        "`x5c` with the attacker's self-signed certificate, no kid",
        no_kid(Spec::by(attacker, "ES256")).header("x5c", x5c.clone()),
        deny("bad_signature"),
    );
    rows.spec(
        "`x5c` with the attacker's certificate, kid naming it",
        Spec::by(attacker, "ES256").header("x5c", x5c),
        deny("unknown_key_id"),
    );
    for kid in [
        "../../../../../../dev/null",
        "/etc/passwd",
        "' OR '1'='1",
        "p256' --",
        "p256\r\nx-injected: 1",
        "p256\u{0}",
        "p256\n",
        "p256 ",
        " p256",
        "P256",
        "*",
        "%",
        "",
        "rotated-away",
    ] {
        rows.spec(
            &format!("kid {kid:?} (signed by the p256 key)"),
            Spec::valid("ES256").header("kid", json!(kid)),
            deny("unknown_key_id"),
        );
    }
    for (what, value) in [
        ("256", json!(256)),
        ("0", json!(0)),
        ("[\"p256\"]", json!(["p256"])),
        ("{\"kid\":\"p256\"}", json!({"kid": "p256"})),
        ("true", json!(true)),
    ] {
        rows.spec(
            &format!("kid {what}"),
            Spec::valid("ES256").header("kid", value),
            deny("malformed_header"),
        );
    }
    rows.spec(
        "kid null",
        es256_header_text(r#"{"alg":"ES256","typ":"JWT","kid":null}"#),
        deny("malformed_header"),
    );
    rows.spec(
        "kid of another provider's key, signed by it",
        Spec::by(Signing::Derived(0x41), "ES256").header("kid", json!("at-key")),
        deny("unknown_key_id"),
    );
    rows.spec(
        "no kid, several keys: the trusted P-256 key",
        no_kid(Spec::valid("ES256")),
        allow(),
    );
    rows.spec(
        "no kid, several keys: the trusted RSA key",
        no_kid(Spec::valid("RS256")),
        allow(),
    );
    rows.spec(
        "no kid, several keys: the set's kid-less key",
        no_kid(Spec::by(Signing::Derived(0x23), "ES256")),
        allow(),
    );
    rows.spec(
        "no kid, several keys: the attacker's key",
        no_kid(Spec::by(attacker, "ES256")),
        deny("bad_signature"),
    );
    rows.spec(
        "attacker's P-384 key under kid p384",
        Spec::by(Signing::AttackerP384, "ES384").header("kid", json!("p384")),
        deny("bad_signature"),
    );
    rows.spec(
        "attacker's Ed25519 key under kid ed25519",
        Spec::by(Signing::AttackerEd25519, "EdDSA").header("kid", json!("ed25519")),
        deny("bad_signature"),
    );
    rows.spec(
        "attacker's Ed25519 key, no kid",
        no_kid(Spec::by(Signing::AttackerEd25519, "EdDSA")),
        deny("bad_signature"),
    );
    rows.spec(
        "the set's kid-less key named by a kid (no fallback)",
        Spec::by(Signing::Derived(0x23), "ES256"),
        deny("unknown_key_id"),
    );
    rows.spec(
        "signed by another trusted key under kid p256 (no fallback)",
        Spec::valid("ES256").signer(Signer::Key(Signing::Derived(0x23), "ES256")),
        deny("bad_signature"),
    );
    rows.cases
}

fn jwks() -> Vec<Case> {
    let mut rows = Rows::new(Group::Jwks);
    let named = |spec: Spec, kid: &str| spec.header("kid", json!(kid));
    rows.spec(
        "duplicate kid: first key",
        named(Spec::by(Signing::Derived(0x21), "ES256"), "dup"),
        allow(),
    );
    rows.spec(
        "duplicate kid: second key",
        named(Spec::by(Signing::Derived(0x22), "ES256"), "dup"),
        allow(),
    );
    rows.spec(
        "duplicate kid: attacker's key",
        named(Spec::by(Signing::AttackerP256, "ES256"), "dup"),
        deny("bad_signature"),
    );
    for (kid, key) in [
        ("private", Signing::Derived(0x31)),
        ("use-enc", Signing::Derived(0x32)),
        ("key-ops-sign", Signing::Derived(0x33)),
        ("p256-off-curve", Signing::Fixture(TestKey::P256)),
        ("p256-zero-point", Signing::Fixture(TestKey::P256)),
        ("p256-short-x", Signing::Fixture(TestKey::P256)),
        ("p256-long-y", Signing::Fixture(TestKey::P256)),
        ("alg-mismatch", Signing::Fixture(TestKey::P256)),
        ("p521", Signing::Fixture(TestKey::P256)),
    ] {
        rows.spec(
            &format!("token for skipped key {kid}"),
            named(Spec::by(key, "ES256"), kid),
            deny("unknown_key_id"),
        );
    }
    for kid in ["ed25519-short", "ed25519-long"] {
        rows.spec(
            &format!("token for skipped key {kid}"),
            named(Spec::valid("EdDSA"), kid),
            deny("unknown_key_id"),
        );
    }
    rows.spec(
        "token for skipped key rsa-1024 (signed by it)",
        Spec::by(Signing::Fixture(TestKey::Rsa1024), "RS256"),
        deny("unknown_key_id"),
    );
    rows.spec(
        "token for skipped key rsa-roca",
        named(Spec::valid("RS256"), "rsa-roca"),
        deny("unknown_key_id"),
    );
    rows.spec(
        "token for skipped key alg-hs256",
        named(Spec::valid("RS256"), "alg-hs256"),
        deny("unknown_key_id"),
    );
    rows.spec(
        "e = 1 forgery (signature = encoded message), kid rsa-e1",
        named(Spec::valid("RS256"), "rsa-e1").signer(Signer::RsaE1),
        deny("unknown_key_id"),
    );
    rows.spec(
        "e = 1 forgery, kid rsa-2048",
        Spec::valid("RS256").signer(Signer::RsaE1),
        deny("bad_signature"),
    );
    rows.spec(
        "e = 1 forgery, no kid",
        Spec::valid("RS256")
            .header("kid", Value::Null)
            .signer(Signer::RsaE1),
        deny("bad_signature"),
    );
    rows.spec(
        "e = 3 key: Bleichenbacher cube-root forgery",
        named(Spec::valid("RS256"), "rsa-e3").signer(Signer::BleichenbacherE3),
        deny("bad_signature"),
    );
    rows.spec(
        "e = 3 key: a signature made for e = 65537",
        named(Spec::valid("RS256"), "rsa-e3"),
        deny("bad_signature"),
    );
    rows.spec(
        "RSA modulus with a leading zero octet (loaded, verifies)",
        named(Spec::valid("RS256"), "rsa-n-leading-zero"),
        allow(),
    );
    let mut identity_forgery = vec![0; 64];
    identity_forgery[0] = 1;
    rows.spec(
        "small-order Ed25519 key: R = identity, S = 0",
        named(Spec::valid("EdDSA"), "ed25519-identity")
            .signer(Signer::Bytes(identity_forgery.clone())),
        deny("bad_signature"),
    );
    rows.spec(
        "small-order Ed25519 key: the same forgery without kid",
        Spec::valid("EdDSA")
            .header("kid", Value::Null)
            .signer(Signer::Bytes(identity_forgery)),
        deny("bad_signature"),
    );
    rows.cases
}

fn signatures() -> Vec<Case> {
    let mut rows = Rows::new(Group::Signatures);
    rows.spec(
        "ES256 r = s = 0 (CVE-2022-21449)",
        Spec::valid("ES256").signer(Signer::Bytes(vec![0; 64])),
        deny("bad_signature"),
    );
    rows.spec(
        "ES384 r = s = 0 (CVE-2022-21449)",
        Spec::valid("ES384").signer(Signer::Bytes(vec![0; 96])),
        deny("bad_signature"),
    );
    rows.spec(
        "ES256 r = s = 0, DER-encoded",
        Spec::valid("ES256").signer(Signer::Bytes(keys::hex("3006020100020100"))),
        deny("bad_signature"),
    );
    rows.spec(
        "ES256 r = s = 0, no kid",
        Spec::valid("ES256")
            .header("kid", Value::Null)
            .signer(Signer::Bytes(vec![0; 64])),
        deny("bad_signature"),
    );
    for (r, s, what) in [
        (Scalar::Zero, Scalar::Valid, "r = 0"),
        (Scalar::Valid, Scalar::Zero, "s = 0"),
        (Scalar::Order, Scalar::Valid, "r = n"),
        (Scalar::Valid, Scalar::Order, "s = n"),
        (Scalar::Order, Scalar::Order, "r = s = n"),
        (Scalar::Max, Scalar::Valid, "r = 2^256 - 1"),
        (Scalar::Valid, Scalar::Max, "s = 2^256 - 1"),
    ] {
        rows.spec(
            &format!("ES256 {what}"),
            Spec::valid("ES256").signer(Signer::P256Scalars(r, s)),
            deny("bad_signature"),
        );
    }
    for alg in ["ES256", "ES384"] {
        rows.spec(
            &format!("{alg} signature DER-encoded"),
            Spec::valid(alg).signature(SignatureEdit::Der),
            deny("bad_signature"),
        );
        rows.spec(
            &format!("{alg} high-S (JWS allows it: accepted)"),
            Spec::valid(alg).signature(SignatureEdit::HighS),
            allow(),
        );
        rows.spec(
            &format!("{alg} low-S"),
            Spec::valid(alg).signature(SignatureEdit::LowS),
            allow(),
        );
        rows.spec(
            &format!("{alg} truncated by one byte"),
            Spec::valid(alg).signature(SignatureEdit::Truncate(1)),
            deny("bad_signature"),
        );
        rows.spec(
            &format!("{alg} extended by a zero byte"),
            Spec::valid(alg).signature(SignatureEdit::Append(vec![0])),
            deny("bad_signature"),
        );
        rows.spec(
            &format!("{alg} prefixed with a zero byte"),
            Spec::valid(alg).signature(SignatureEdit::Prepend(vec![0])),
            deny("bad_signature"),
        );
    }
    for (alg, integer, what) in [
        ("RS256", RsaInteger::Zero, "0"),
        ("RS256", RsaInteger::One, "1"),
        ("RS256", RsaInteger::ModulusMinusOne, "n - 1"),
        ("RS256", RsaInteger::Modulus, "n"),
        ("PS256", RsaInteger::Zero, "0"),
        ("PS256", RsaInteger::One, "1"),
        ("PS256", RsaInteger::ModulusMinusOne, "n - 1"),
        ("PS256", RsaInteger::Modulus, "n"),
    ] {
        rows.spec(
            &format!("{alg} signature {what}"),
            Spec::valid(alg).signer(Signer::RsaInteger(integer)),
            deny("bad_signature"),
        );
    }
    for alg in ["RS256", "PS256"] {
        rows.spec(
            &format!("{alg} signature s + n (same value mod n, still 256 bytes)"),
            Spec::valid(alg).signature(SignatureEdit::AddModulus),
            deny("bad_signature"),
        );
    }
    rows.spec(
        "RS256 signature starting with 0x00, full length (control)",
        Spec::valid("RS256").signature(SignatureEdit::RequireLeadingZero),
        allow(),
    );
    rows.spec(
        "RS256 signature with its leading 0x00 stripped (255 bytes)",
        Spec::valid("RS256")
            .signature(SignatureEdit::RequireLeadingZero)
            .signature(SignatureEdit::StripLeadingZero),
        deny("bad_signature"),
    );
    rows.spec(
        "RS256 signature with an extra leading 0x00 (257 bytes)",
        Spec::valid("RS256").signature(SignatureEdit::Prepend(vec![0])),
        deny("bad_signature"),
    );
    rows.spec(
        "RS256 signature truncated by one byte",
        Spec::valid("RS256").signature(SignatureEdit::Truncate(1)),
        deny("bad_signature"),
    );
    rows.spec(
        "RS256 signature extended by one byte",
        Spec::valid("RS256").signature(SignatureEdit::Append(vec![0])),
        deny("bad_signature"),
    );
    for (alg, bits, salt, expect) in [
        ("PS256", 256, 32, allow()),
        ("PS256", 256, 0, deny("bad_signature")),
        ("PS256", 256, 20, deny("bad_signature")),
        ("PS256", 256, 64, deny("bad_signature")),
        ("PS384", 384, 32, deny("bad_signature")),
        ("PS512", 512, 64, allow()),
        ("PS512", 512, 32, deny("bad_signature")),
    ] {
        rows.spec(
            &format!("{alg} with a {salt}-byte salt"),
            Spec::valid(alg).signer(Signer::Pss(bits, salt)),
            expect,
        );
    }
    rows.spec(
        "PKCS#1 v1.5 (RS256) signature sent as PS256",
        Spec::valid("RS256").header("alg", json!("PS256")),
        deny("bad_signature"),
    );
    rows.spec(
        "Ed25519 S + L (S >= L)",
        Spec::valid("EdDSA").signature(SignatureEdit::AddEd25519Order),
        deny("bad_signature"),
    );
    rows.spec(
        "Ed25519 with trailing garbage (65 bytes)",
        Spec::valid("EdDSA").signature(SignatureEdit::Append(vec![0x42])),
        deny("bad_signature"),
    );
    rows.spec(
        "Ed25519 truncated (63 bytes)",
        Spec::valid("EdDSA").signature(SignatureEdit::Truncate(1)),
        deny("bad_signature"),
    );
    rows.spec(
        "Ed25519 all-zero signature",
        Spec::valid("EdDSA").signer(Signer::Bytes(vec![0; 64])),
        deny("bad_signature"),
    );
    rows.spec(
        "Ed25519 R = identity, S = 0 (trusted key)",
        Spec::valid("EdDSA").signer(Signer::Bytes({
            let mut forged = vec![0; 64];
            forged[0] = 1;
            forged
        })),
        deny("bad_signature"),
    );
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ] {
        rows.spec(
            &format!("{alg} with one signature bit flipped"),
            Spec::valid(alg).signature(SignatureEdit::FlipFirstBit),
            deny("bad_signature"),
        );
    }
    rows.cases
}

/// A raw DEFLATE (RFC 1951) stream of one stored block: what `zip: DEF` (RFC 7516 §4.1.3)
/// would decompress.
fn deflate_stored(data: &[u8]) -> Vec<u8> {
    let length = u16::try_from(data.len()).unwrap();
    let mut stream = vec![0x01];
    stream.extend_from_slice(&length.to_le_bytes());
    stream.extend_from_slice(&(!length).to_le_bytes());
    stream.extend_from_slice(data);
    stream
}

/// An access token for the `at_only` provider (`token_types: ["at+jwt"]`).
fn access_token(typ: Option<&str>) -> Spec {
    let spec = Spec::by(Signing::Derived(0x41), "ES256")
        .header("kid", json!("at-key"))
        .claims_part(Part::Json(claims_for(AT_ISSUER)));
    match typ {
        Some(typ) => spec.header("typ", json!(typ)),
        None => spec.header("typ", Value::Null),
    }
}

fn header() -> Vec<Case> {
    let mut rows = Rows::new(Group::Header);
    for (what, crit) in [
        ("[\"exp\"] (with exp in the header)", json!(["exp"])),
        ("[] (empty)", json!([])),
        ("[\"b64\"] with b64: false", json!(["b64"])),
        ("\"exp\" (not an array)", json!("exp")),
        ("[\"unknown-extension\"]", json!(["unknown-extension"])),
    ] {
        rows.spec(
            &format!("crit {what}"),
            Spec::valid("ES256")
                .header("crit", crit)
                .header("exp", at(60))
                .header(
                    "b64",
                    if what.contains("b64") {
                        json!(false)
                    } else {
                        Value::Null
                    },
                ),
            deny("critical_header"),
        );
    }
    rows.spec(
        "b64: false (RFC 7797 unencoded payload)",
        Spec::valid("ES256").header("b64", json!(false)),
        deny("unencoded_payload"),
    );
    rows.spec(
        "b64: true",
        Spec::valid("ES256").header("b64", json!(true)),
        deny("unencoded_payload"),
    );
    let inner = Spec::valid("ES256").mint();
    rows.spec(
        "cty JWT, payload a nested JWT",
        Spec::valid("ES256")
            .header("cty", json!("JWT"))
            .claims_part(Part::Text(inner.clone())),
        deny("malformed_json"),
    );
    rows.spec(
        "cty JWT, payload the nested JWT as a JSON string",
        Spec::valid("ES256")
            .header("cty", json!("JWT"))
            .claims_part(Part::Text(json!(inner).to_string())),
        deny("malformed_json"),
    );
    rows.spec(
        "cty JWT with ordinary claims (cty ignored: claims verified as usual)",
        Spec::valid("ES256").header("cty", json!("JWT")),
        allow(),
    );
    rows.spec(
        "zip DEF with a deflated payload",
        Spec::valid("ES256")
            .header("zip", json!("DEF"))
            .claims_part(Part::Bytes(deflate_stored(b"{\"iss\":\"x\"}"))),
        deny("malformed_json"),
    );
    rows.spec(
        "zip DEF with a plain JSON payload (zip ignored)",
        Spec::valid("ES256").header("zip", json!("DEF")),
        allow(),
    );
    rows.spec(
        "unknown header members are ignored",
        Spec::valid("ES256").header("x-custom", json!({"admin": true})),
        allow(),
    );
    for (typ, expect) in [
        (Some("at+jwt"), allow()),
        (Some("application/at+jwt"), allow()),
        (Some("AT+JWT"), allow()),
        (Some("Application/At+Jwt"), allow()),
        (None, deny("token_type_not_allowed")),
        (Some("JWT"), deny("token_type_not_allowed")),
        (Some("jwt"), deny("token_type_not_allowed")),
        (Some("application/jwt"), deny("token_type_not_allowed")),
        (Some("at+jwt "), deny("token_type_not_allowed")),
        (Some("at+jwt\u{0}"), deny("token_type_not_allowed")),
        (
            Some("application/application/at+jwt"),
            deny("token_type_not_allowed"),
        ),
        (Some("dpop+jwt"), deny("token_type_not_allowed")),
        (Some(""), deny("token_type_not_allowed")),
    ] {
        rows.spec(
            &format!("token_types [at+jwt]: typ {typ:?}"),
            access_token(typ),
            expect,
        );
    }
    rows.spec(
        "token_types [at+jwt]: an OpenID Connect ID token (typ JWT, nonce, azp)",
        access_token(Some("JWT"))
            .claim("nonce", json!("n-0S6_WzA2Mj"))
            .claim("azp", json!("client"))
            .claim("auth_time", at(-10)),
        deny("token_type_not_allowed"),
    );
    rows.spec(
        "token_types [at+jwt]: typ a number",
        access_token(None).header("typ", json!(1)),
        deny("malformed_header"),
    );
    for (typ, expect) in [
        (None, allow()),
        (Some("JWT"), allow()),
        (Some("jwt"), allow()),
        (Some("application/jwt"), allow()),
        (Some("at+jwt"), allow()),
        (Some("dpop+jwt"), deny("token_type_not_allowed")),
        (Some("logout+jwt"), deny("token_type_not_allowed")),
        (Some("secevent+jwt"), deny("token_type_not_allowed")),
        (Some(""), deny("token_type_not_allowed")),
    ] {
        let spec = match typ {
            Some(typ) => Spec::valid("ES256").header("typ", json!(typ)),
            None => Spec::valid("ES256").header("typ", Value::Null),
        };
        rows.spec(&format!("default token types: typ {typ:?}"), spec, expect);
    }
    rows.cases
}

fn claims() -> Vec<Case> {
    let mut rows = Rows::new(Group::Claims);
    let with = |name: &str, value: Value| Spec::valid("ES256").claim(name, value);
    rows.spec(
        "exp missing",
        with("exp", Value::Null),
        deny_claim("missing_claim", "exp"),
    );
    rows.spec(
        "exp JSON null",
        Spec::valid("ES256").claim_null("exp"),
        deny_claim("invalid_claim", "exp"),
    );
    for (what, value) in [
        ("a word", json!("tomorrow")),
        ("a string of digits", at_text(3600)),
        ("negative (-1)", json!(-1)),
        ("1e20", json!(1e20)),
        ("2^63", json!(9_223_372_036_854_775_808_u64)),
        ("253402300800 (year 10000)", json!(253_402_300_800_i64)),
        ("true", json!(true)),
        ("an array", json!([at(3600)])),
        ("an object", json!({"value": at(3600)})),
        ("-0.5 (fractional, negative)", json!(-0.5)),
    ] {
        rows.spec(
            &format!("exp {what}"),
            with("exp", value),
            deny_claim("invalid_claim", "exp"),
        );
    }
    rows.spec(
        "exp 1e400 (beyond f64)",
        es256_claims_text(&format!(
            r#"{{"iss":"{MAIN_ISSUER}","aud":"{AUDIENCE}","sub":"{SUBJECT}","exp":1e400}}"#
        )),
        deny("malformed_json"),
    );
    rows.spec(
        "exp fractional (now + 3600.5)",
        with("exp", at_fraction(3600)),
        allow(),
    );
    rows.spec(
        "exp 253402300799 (last second of 9999)",
        with("exp", json!(253_402_300_799_i64)),
        allow(),
    );
    rows.spec("exp 0", with("exp", json!(0)), deny("expired"));
    rows.spec(
        "exp now (inside the 60 s skew)",
        with("exp", at(0)),
        allow(),
    );
    rows.spec(
        "exp now - 59 (1 s inside the skew)",
        with("exp", at(-59)),
        allow(),
    );
    rows.edit(Case::aligned);
    rows.spec(
        "exp now - 60 (exactly at the skew edge)",
        with("exp", at(-60)),
        deny("expired"),
    );
    rows.spec(
        "exp now - 61 (1 s past the skew)",
        with("exp", at(-61)).claim("iat", at(-120)),
        deny("expired"),
    );
    rows.spec(
        "nbf now + 3600",
        with("nbf", at(3600)),
        deny("not_yet_valid"),
    );
    rows.spec(
        "nbf now + 60 (exactly at the skew edge)",
        with("nbf", at(60)),
        allow(),
    );
    rows.spec(
        "nbf now + 61 (1 s past the skew)",
        with("nbf", at(61)),
        deny("not_yet_valid"),
    );
    rows.edit(Case::aligned);
    rows.spec("nbf 0", with("nbf", json!(0)), allow());
    for (claim, value, what) in [
        ("nbf", json!(253_402_300_800_i64), "253402300800"),
        ("nbf", json!(-1), "-1"),
        ("nbf", json!(1e300), "1e300"),
        ("nbf", at_text(0), "a string"),
        ("iat", json!(253_402_300_800_i64), "253402300800"),
        ("iat", json!(-1), "-1"),
        ("iat", json!(1e20), "1e20"),
        ("iat", json!("now"), "a word"),
    ] {
        rows.spec(
            &format!("{claim} {what}"),
            with(claim, value),
            deny_claim("invalid_claim", claim),
        );
    }
    for claim in ["nbf", "iat"] {
        rows.spec(
            &format!("{claim} JSON null"),
            Spec::valid("ES256").claim_null(claim),
            deny_claim("invalid_claim", claim),
        );
    }
    rows.spec(
        "iat now + 3600",
        with("iat", at(3600)).claim("exp", at(7200)),
        deny("issued_in_future"),
    );
    rows.spec(
        "iat now + 60 (exactly at the skew edge)",
        with("iat", at(60)),
        allow(),
    );
    rows.spec(
        "iat now + 61 (1 s past the skew)",
        with("iat", at(61)),
        deny("issued_in_future"),
    );
    rows.edit(Case::aligned);
    rows.spec("iat 0", with("iat", json!(0)), allow());
    rows.spec("iat fractional", with("iat", at_fraction(-10)), allow());
    rows.spec("iat missing", with("iat", Value::Null), allow());
    rows.spec("aud a string", with("aud", json!(AUDIENCE)), allow());
    rows.spec("aud an array", with("aud", json!([AUDIENCE])), allow());
    rows.spec(
        "aud an array with another audience first",
        with("aud", json!(["api://other", AUDIENCE])),
        allow(),
    );
    rows.spec(
        "aud missing",
        with("aud", Value::Null),
        deny_claim("missing_claim", "aud"),
    );
    for (what, value) in [
        ("empty string", json!("")),
        ("empty array", json!([])),
        ("\"*\"", json!("*")),
        ("[\"*\"]", json!(["*"])),
        ("upper case", json!("API://ATTACKS")),
        ("with a trailing slash", json!("api://attacks/")),
        ("with a leading space", json!(" api://attacks")),
        ("with a trailing NUL", json!("api://attacks\u{0}")),
        ("a prefix of the audience", json!("api://attack")),
        ("the audience plus a suffix", json!("api://attacks.evil")),
        ("the issuer", json!(MAIN_ISSUER)),
    ] {
        rows.spec(
            &format!("aud {what}"),
            with("aud", value),
            deny("audience_mismatch"),
        );
    }
    for (what, value) in [
        ("[1]", json!([1])),
        ("[null, audience]", json!([null, AUDIENCE])),
        ("[[audience]]", json!([[AUDIENCE]])),
        ("42", json!(42)),
        ("an object", json!({"aud": AUDIENCE})),
    ] {
        rows.spec(
            &format!("aud {what}"),
            with("aud", value),
            deny_claim("invalid_claim", "aud"),
        );
    }
    rows.spec(
        "aud JSON null",
        Spec::valid("ES256").claim_null("aud"),
        deny_claim("invalid_claim", "aud"),
    );
    for (what, value) in [
        ("with a trailing slash", json!(format!("{MAIN_ISSUER}/"))),
        ("upper case", json!(MAIN_ISSUER.to_uppercase())),
        (
            "http instead of https",
            json!(MAIN_ISSUER.replace("https", "http")),
        ),
        ("with a trailing space", json!(format!("{MAIN_ISSUER} "))),
        ("with a trailing NUL", json!(format!("{MAIN_ISSUER}\u{0}"))),
        ("missing", Value::Null),
        ("a number", json!(42)),
        ("an array of the issuer", json!([MAIN_ISSUER])),
        ("an object", json!({"iss": MAIN_ISSUER})),
    ] {
        rows.spec(
            &format!("iss {what}"),
            with("iss", value),
            deny("unknown_issuer"),
        );
    }
    rows.spec(
        "iss JSON null",
        Spec::valid("ES256").claim_null("iss"),
        deny("unknown_issuer"),
    );
    rows.spec(
        "iss of a provider the route does not accept",
        Spec::valid("ES256"),
        deny("issuer_not_accepted"),
    );
    rows.edit(|case| case.path(ES_ONLY_PATH));
    rows.spec(
        "iss of another provider, signed by that provider's key",
        Spec::by(Signing::Derived(0x41), "ES256")
            .header("kid", json!("at-key"))
            .issuer(AT_ISSUER)
            .header("typ", json!("at+jwt")),
        allow(),
    );
    rows.spec(
        "iss of another provider, signed by a main-only key",
        Spec::by(Signing::Fixture(TestKey::P384), "ES384")
            .issuer(AT_ISSUER)
            .header("typ", json!("at+jwt")),
        deny("unknown_key_id"),
    );
    for (what, value) in [
        ("a number", json!(42)),
        ("an array", json!([SUBJECT])),
        ("an object", json!({"id": SUBJECT})),
        ("true", json!(true)),
    ] {
        rows.spec(
            &format!("sub {what}"),
            with("sub", value),
            deny_claim("invalid_claim", "sub"),
        );
    }
    rows.spec(
        "sub JSON null",
        Spec::valid("ES256").claim_null("sub"),
        deny_claim("invalid_claim", "sub"),
    );
    rows.spec("sub missing", with("sub", Value::Null), allow_as("-"));
    rows.cases
}

fn request() -> Vec<Case> {
    let mut rows = Rows::new(Group::Request);
    rows.spec("two tokens in one header", Spec::valid("ES256"), {
        deny("multiple_tokens")
    });
    rows.edit(|case| case.headers(&[("authorization", "Bearer {token}, Bearer {token}")]));
    rows.spec(
        "two Authorization headers with the same token",
        Spec::valid("ES256"),
        deny("multiple_tokens"),
    );
    rows.edit(|case| {
        case.headers(&[
            ("authorization", "Bearer {token}"),
            ("authorization", "Bearer {token}"),
        ])
    });
    rows.spec(
        "two Authorization headers, the second a forgery",
        Spec::valid("ES256"),
        deny("multiple_tokens"),
    );
    rows.edit(|case| {
        case.headers(&[
            ("authorization", "Bearer {token}"),
            ("authorization", "Bearer e30.e30."),
        ])
    });
    rows.spec(
        "two tokens separated by a space",
        Spec::valid("ES256"),
        deny("malformed_token"),
    );
    rows.edit(|case| case.headers(&[("authorization", "Bearer {token} {token}")]));
    rows.spec(
        "Basic credential next to the bearer token",
        Spec::valid("ES256"),
        allow(),
    );
    rows.edit(|case| case.headers(&[("authorization", "Basic YWxpY2U6c2VjcmV0, Bearer {token}")]));
    rows.spec("scheme in lower case", Spec::valid("ES256"), allow());
    rows.edit(|case| case.headers(&[("authorization", "bearer {token}")]));
    rows.spec(
        "tab after the scheme",
        Spec::valid("ES256"),
        deny("missing_token"),
    );
    rows.edit(|case| case.headers(&[("authorization", "Bearer\t{token}")]));
    rows.spec(
        "token without a scheme",
        Spec::valid("ES256"),
        deny("missing_token"),
    );
    rows.edit(|case| case.headers(&[("authorization", "{token}")]));
    rows.spec(
        "token in Proxy-Authorization",
        Spec::valid("ES256"),
        deny("missing_token"),
    );
    rows.edit(|case| case.headers(&[("proxy-authorization", "Bearer {token}")]));
    rows.spec(
        "NUL byte in the Authorization header",
        Spec::valid("ES256"),
        Expect::Envoy(400),
    );
    rows.edit(|case| case.headers(&[("authorization", "Bearer {token}\u{0}")]));
    let name_claim = |value: Value| Spec::valid("ES256").claim("name", value);
    for (what, value) in [
        ("CR LF and a header", "alice\r\nx-admin: true"),
        ("LF", "alice\nadmin"),
        ("CR", "alice\radmin"),
        ("NUL", "alice\u{0}admin"),
        ("DEL", "alice\u{7f}"),
        ("U+0085 (NEL)", "alice\u{85}admin"),
    ] {
        rows.spec(
            &format!("name claim with {what}: allowed, header not forwarded"),
            name_claim(json!(value)),
            allow_forwarding(
                Some(SUBJECT),
                &[
                    ("x-jwt-name", None),
                    ("x-admin", None),
                    ("x-jwt-sub", Some(SUBJECT)),
                ],
            ),
        );
    }
    rows.spec(
        "name claim with LF, client also sends x-jwt-name",
        name_claim(json!("alice\nadmin")),
        allow_forwarding(Some(SUBJECT), &[("x-jwt-name", None)]),
    );
    rows.edit(|case| case.headers(&[("authorization", "Bearer {token}"), ("x-jwt-name", "admin")]));
    rows.spec(
        "name claim with a tab (allowed in a header value)",
        name_claim(json!("alice\tsmith")),
        allow_forwarding(Some(SUBJECT), &[("x-jwt-name", Some("alice\tsmith"))]),
    );
    rows.spec(
        "roles claim, one element with LF",
        Spec::valid("ES256").claim("roles", json!(["user", "admin\r\nx-admin: true"])),
        allow_forwarding(Some(SUBJECT), &[("x-jwt-roles", None), ("x-admin", None)]),
    );
    rows.spec(
        "roles claim (control)",
        Spec::valid("ES256").claim("roles", json!(["user", "viewer"])),
        allow_forwarding(Some(SUBJECT), &[("x-jwt-roles", Some("user,viewer"))]),
    );
    rows.spec(
        "sub with CR LF: allowed, x-jwt-sub not forwarded",
        Spec::valid("ES256").claim("sub", json!("alice\r\nx-admin: true")),
        allow_forwarding(None, &[("x-jwt-sub", None), ("x-admin", None)]),
    );
    rows.cases
}

/// A configuration Envoy must refuse to start with, and what its log must say.
pub struct ConfigCase {
    pub name: &'static str,
    pub configuration: Value,
    pub logged: String,
}

/// One provider with this key set (and, if given, this allow-list).
fn one_provider(keys: Value, algorithms: Option<Value>) -> Value {
    let mut provider = json!({
        "name": "refused",
        "issuer": MAIN_ISSUER,
        "audiences": [AUDIENCE],
        "jwks": {"inline": {"keys": keys}},
    });
    if let Some(algorithms) = algorithms {
        provider["algorithms"] = algorithms;
    }
    json!({"providers": [provider]})
}

/// Configurations whose every key is unusable (or whose allow-list names `none`/HMAC): each
/// must stop Envoy at start-up, naming the problem.
pub fn refused_configurations() -> Vec<ConfigCase> {
    let entries = keys::main_key_set();
    let entry = |kid: &str| {
        entries
            .iter()
            .find(|entry| entry.kid == kid)
            .unwrap_or_else(|| panic!("no key {kid}"))
    };
    let prefix = "invalid configuration at `providers[0]";
    let mut cases: Vec<ConfigCase> = [
        ("only an oct key", "oct"),
        ("only a key with private members", "private"),
        ("only a use: enc key", "use-enc"),
        ("only an RSA-1024 key", "rsa-1024"),
        ("only an RSA key with e = 1", "rsa-e1"),
        ("only a ROCA-fingerprinted RSA key", "rsa-roca"),
        ("only an off-curve P-256 key", "p256-off-curve"),
        ("only an Ed25519 key with a 31-byte x", "ed25519-short"),
    ]
    .into_iter()
    .map(|(name, kid)| {
        let entry = entry(kid);
        let keys::Load::Skipped(reason) = entry.load else {
            panic!("{kid} is loaded, not skipped");
        };
        ConfigCase {
            name,
            configuration: one_provider(json!([entry.jwk]), None),
            logged: format!(
                "{prefix}.jwks.inline`: no key can verify any of the provider's algorithms: keys[0]: {reason}"
            ),
        }
    })
    .collect();
    for algorithm in ["none", "HS256"] {
        cases.push(ConfigCase {
            name: if algorithm == "none" {
                "algorithms [\"none\"]"
            } else {
                "algorithms [\"HS256\"]"
            },
            configuration: one_provider(json!([TestKey::Rsa2048.jwk()]), Some(json!([algorithm]))),
            logged: format!("{prefix}.algorithms[0]`: unsupported algorithm \"{algorithm}\""),
        });
    }
    cases.push(ConfigCase {
        name: "algorithms [\"RS256\"] with only EC keys",
        configuration: one_provider(json!([TestKey::P256.jwk()]), Some(json!(["RS256"]))),
        logged: format!(
            "{prefix}.jwks.inline`: no key can verify any of the provider's algorithms"
        ),
    });
    cases
}
