//! The host's signature verification as a [`SignatureVerifier`], and choosing it.
//!
//! `crypto: auto` hands `RS*` and `ES*` signatures to the proxy's crypto library through the
//! foreign function `verify_signature` (Envoy: BoringSSL), if the host passes a self-test of
//! known answers at configure time; otherwise, and for `PS*` and EdDSA, the portable code
//! verifies. The form of every signature is checked in Rust before the host sees it
//! ([`crate::jose::signature::check`]), so both backends give the same verdicts.

use super::abi::{self, LogLevel, Status};

use crate::config::CryptoBackend;
use crate::jose::host_crypto;
use crate::jose::signature::{CheckedSignature, Portable, SignatureVerifier};

use super::log;
use super::stats::Stats;

/// The backend chosen for one configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signatures {
    /// The host verifies what it can; the portable code the rest.
    Host,
    Portable,
}

impl Signatures {
    /// Picks the backend `configured`, running the host's self-test for `auto`.
    pub(crate) fn choose(configured: CryptoBackend, context_id: u32) -> Signatures {
        match configured {
            CryptoBackend::Portable => Signatures::Portable,
            CryptoBackend::Auto => match self_test() {
                Ok(()) => Signatures::Host,
                Err(problem) => {
                    log(
                        LogLevel::Info,
                        context_id,
                        &format!("signatures are verified by portable code: {problem}"),
                    );
                    Signatures::Portable
                }
            },
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Signatures::Host => "host",
            Signatures::Portable => "portable",
        }
    }
}

/// Runs the known-answer calls; `Err` says why the host's verification is not used.
fn self_test() -> Result<(), String> {
    for case in host_crypto::self_test_cases() {
        match call_host(&case.arguments) {
            Ok(verdict) if verdict == case.expected => {}
            Ok(verdict) => {
                return Err(format!(
                    "the host's `verify_signature` answered {verdict} to a known {} signature that is {}",
                    case.algorithm,
                    if case.expected { "good" } else { "bad" }
                ))
            }
            Err(HostFailure::Status(Status::NotFound)) => {
                return Err("the host has no `verify_signature` function".to_owned())
            }
            Err(failure) => {
                return Err(format!(
                    "the host's `verify_signature` failed its self-test: {failure:?}"
                ))
            }
        }
    }
    Ok(())
}

#[derive(Debug)]
enum HostFailure {
    Status(Status),
    NoAnswer,
    MalformedAnswer,
}

fn call_host(arguments: &[u8]) -> Result<bool, HostFailure> {
    let answer = abi::call_foreign_function(host_crypto::FUNCTION_NAME, arguments)
        .map_err(HostFailure::Status)?
        .ok_or(HostFailure::NoAnswer)?;
    host_crypto::decode_result(&answer).map_err(|_| HostFailure::MalformedAnswer)
}

/// One log line per this many failed host verifications (the first is always logged).
const FALLBACK_LOG_EVERY: u64 = 1000;

thread_local! {
    /// Failed host verifications in this VM so far.
    static HOST_FAILURES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// [`Signatures`] bound to the counters, for one decision.
pub(crate) struct Verifier<'a> {
    pub(crate) signatures: Signatures,
    pub(crate) stats: &'a Stats,
    pub(crate) context_id: u32,
}

impl SignatureVerifier for Verifier<'_> {
    fn verify(&self, signature: &CheckedSignature<'_>) -> bool {
        let arguments = match self.signatures {
            Signatures::Host => signature.host_arguments(),
            Signatures::Portable => None,
        };
        let Some(arguments) = arguments else {
            return Portable.verify(signature);
        };
        match call_host(&arguments) {
            Ok(verdict) => verdict,
            // The host passed its self-test, so this is a transient failure; the portable code
            // gives the same verdict, only slower. Counted, so an operator sees it happen.
            Err(failure) => {
                self.stats.count_host_crypto_fallback();
                // The counter has every failure; the log the first and then one in
                // `FALLBACK_LOG_EVERY`, so a host failing for good cannot flood it.
                let failures = HOST_FAILURES.with(|count| {
                    let next = count.get().wrapping_add(1);
                    count.set(next);
                    next
                });
                if failures % FALLBACK_LOG_EVERY == 1 {
                    log(
                        LogLevel::Warn,
                        self.context_id,
                        &format!(
                            "host signature verification failed ({failure:?}), {failures} time(s) so far; verifying portably"
                        ),
                    );
                }
                Portable.verify(signature)
            }
        }
    }
}
