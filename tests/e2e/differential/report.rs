//! Verdicts, their comparison per mutation class, and the report: a table on stdout, the same
//! as markdown in `target/differential/report.md`, every disagreement with its tokens in
//! `target/differential/disagreements.tsv` (to reproduce one with curl), and every case's
//! verdicts in `target/differential/outcomes.tsv`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::corpus::{Case, CLASSES};
use crate::http::Response;

/// What one Envoy did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `200` from the echo upstream.
    Allow,
    /// `400`, `401` or `403` from the authentication filter (or Envoy's codec, for a header it
    /// refuses), with the reason: our body's `reason`, native's body text.
    Deny { status: u16, reason: String },
    /// Anything else: a `5xx`, a connection failure. Never expected.
    Error(String),
}

impl Verdict {
    /// `ours`: our JSON body names the reason; otherwise the body text is the reason.
    pub fn of(response: Result<Response, String>, ours: bool) -> Verdict {
        let response = match response {
            Ok(response) => response,
            Err(err) => return Verdict::Error(err),
        };
        match response.status {
            200 => Verdict::Allow,
            400 | 401 | 403 => {
                let text = response.text();
                let reason = if ours {
                    serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|body| body["reason"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| text.trim().to_owned())
                } else {
                    text.trim().to_owned()
                };
                let reason = if reason.is_empty() {
                    "(empty body)".to_owned()
                } else {
                    reason
                };
                Verdict::Deny {
                    status: response.status,
                    reason,
                }
            }
            status => Verdict::Error(format!("{status} {}", response.text().trim())),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Verdict::Allow => "allow (200)".to_owned(),
            Verdict::Deny { status, reason } => format!("{status} {reason}"),
            Verdict::Error(error) => format!("ERROR {error}"),
        }
    }
}

/// How the two verdicts on one case compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Comparison {
    BothAllow,
    BothDeny,
    WeDenyNativeAllows,
    WeAllowNativeDenies,
    Error,
}

impl Comparison {
    pub fn of(ours: &Verdict, native: &Verdict) -> Comparison {
        match (ours, native) {
            (Verdict::Error(_), _) | (_, Verdict::Error(_)) => Comparison::Error,
            (Verdict::Allow, Verdict::Allow) => Comparison::BothAllow,
            (Verdict::Deny { .. }, Verdict::Deny { .. }) => Comparison::BothDeny,
            (Verdict::Deny { .. }, Verdict::Allow) => Comparison::WeDenyNativeAllows,
            (Verdict::Allow, Verdict::Deny { .. }) => Comparison::WeAllowNativeDenies,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Comparison::BothAllow => "both allow",
            Comparison::BothDeny => "both deny",
            Comparison::WeDenyNativeAllows => "we deny, native allows",
            Comparison::WeAllowNativeDenies => "we allow, native denies",
            Comparison::Error => "error",
        }
    }
}

/// One case and both verdicts.
pub struct Outcome {
    pub case: Case,
    pub ours: Verdict,
    pub native: Verdict,
}

impl Outcome {
    pub fn comparison(&self) -> Comparison {
        Comparison::of(&self.ours, &self.native)
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub total: usize,
    pub both_allow: usize,
    pub both_deny: usize,
    pub we_deny_native_allows: usize,
    pub we_allow_native_denies: usize,
    pub errors: usize,
}

impl Tally {
    fn add(&mut self, comparison: Comparison) {
        self.total += 1;
        match comparison {
            Comparison::BothAllow => self.both_allow += 1,
            Comparison::BothDeny => self.both_deny += 1,
            Comparison::WeDenyNativeAllows => self.we_deny_native_allows += 1,
            Comparison::WeAllowNativeDenies => self.we_allow_native_denies += 1,
            Comparison::Error => self.errors += 1,
        }
    }

    pub fn agree(&self) -> usize {
        self.both_allow + self.both_deny
    }
}

/// Per class, in [`CLASSES`] order (then any other class), and the total.
pub fn tallies(outcomes: &[Outcome]) -> (Vec<(&'static str, Tally)>, Tally) {
    let mut classes: Vec<(&'static str, Tally)> = Vec::new();
    let mut total = Tally::default();
    for outcome in outcomes {
        let comparison = outcome.comparison();
        total.add(comparison);
        let index = match classes
            .iter()
            .position(|(class, _)| *class == outcome.case.class)
        {
            Some(index) => index,
            None => {
                classes.push((outcome.case.class, Tally::default()));
                classes.len() - 1
            }
        };
        classes[index].1.add(comparison);
    }
    classes.sort_by_key(|(class, _)| {
        CLASSES
            .iter()
            .position(|(known, _)| known == class)
            .unwrap_or(CLASSES.len())
    });
    (classes, total)
}

/// The per-class table, as markdown (which also reads well on a terminal).
pub fn table(outcomes: &[Outcome]) -> String {
    let (classes, total) = tallies(outcomes);
    let errors = total.errors > 0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {:<18} | {:>6} | {:>6} | {:>10} | {:>22} | {:>23} |{}",
        "class",
        "total",
        "agree",
        "both allow",
        "we deny, native allows",
        "we allow, native denies",
        if errors { " errors |" } else { "" }
    );
    let _ = writeln!(
        out,
        "|{}|{}|{}|{}|{}|{}|{}",
        "-".repeat(20),
        "-".repeat(7) + ":",
        "-".repeat(7) + ":",
        "-".repeat(11) + ":",
        "-".repeat(23) + ":",
        "-".repeat(24) + ":",
        if errors { "-------:|" } else { "" }
    );
    let row = |out: &mut String, class: &str, tally: &Tally| {
        let _ = writeln!(
            out,
            "| {:<18} | {:>6} | {:>6} | {:>10} | {:>22} | {:>23} |{}",
            class,
            tally.total,
            tally.agree(),
            tally.both_allow,
            tally.we_deny_native_allows,
            tally.we_allow_native_denies,
            if errors {
                format!(" {:>6} |", tally.errors)
            } else {
                String::new()
            }
        );
    };
    for (class, tally) in &classes {
        row(&mut out, class, tally);
    }
    row(&mut out, "**all**", &total);
    out
}

/// A group of disagreeing cases: same direction, class and reasons on both sides.
struct Group<'a> {
    variants: Vec<String>,
    examples: Vec<&'a Outcome>,
    count: usize,
}

/// Disagreements grouped by direction, class, our reason and native's reason.
fn groups(outcomes: &[Outcome]) -> BTreeMap<(Comparison, &'static str, String, String), Group<'_>> {
    let mut groups: BTreeMap<_, Group<'_>> = BTreeMap::new();
    for outcome in outcomes {
        let comparison = outcome.comparison();
        if matches!(comparison, Comparison::BothAllow | Comparison::BothDeny) {
            continue;
        }
        let key = (
            comparison,
            outcome.case.class,
            outcome.ours.label(),
            outcome.native.label(),
        );
        let group = groups.entry(key).or_insert_with(|| Group {
            variants: Vec::new(),
            examples: Vec::new(),
            count: 0,
        });
        group.count += 1;
        if !group.variants.contains(&outcome.case.variant) {
            group.variants.push(outcome.case.variant.clone());
        }
        if group.examples.len() < 3 {
            group.examples.push(outcome);
        }
    }
    groups
}

/// The whole report in markdown: the table, the classes, then every disagreement group. Cases
/// we allow and native denies are labelled from `explained` (by design) or `bugs` (reported).
pub fn markdown(
    outcomes: &[Outcome],
    elapsed: &str,
    explained: &[(&str, &str)],
    bugs: &[(&str, &str)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Differential run: native `jwt_authn` vs `wasm-jwt-authn`\n\n\
         {} requests through each Envoy ({elapsed}). `allow` is `200` from the upstream; \
         `deny` is `400`/`401`/`403`. Explanations: `tests/e2e/differential/REPORT.md`.\n",
        outcomes.len()
    );
    out.push_str(&table(outcomes));
    out.push_str("\nClasses:\n\n");
    for (class, description) in CLASSES {
        let _ = writeln!(out, "- `{class}`: {description}");
    }
    out.push_str("\n## Disagreements\n\nGrouped by direction, class, our reason and native's answer; `variants` are the mutations (any algorithm).\n");
    let mut current = None;
    for ((comparison, class, ours, native), group) in groups(outcomes) {
        if current != Some(comparison) {
            let _ = writeln!(out, "\n### {}\n", comparison.title());
            current = Some(comparison);
        }
        let mut variants = group.variants.clone();
        let shown = variants.len().min(12);
        let more = variants.len() - shown;
        variants.truncate(shown);
        let _ = writeln!(
            out,
            "- **{class}**, {} case(s): ours `{ours}`, native `{native}`; variants: {}{}",
            group.count,
            variants.join(", "),
            if more > 0 {
                format!(" (+{more} more)")
            } else {
                String::new()
            }
        );
        if comparison == Comparison::WeAllowNativeDenies {
            for example in &group.examples {
                let key = example.case.key();
                let why = match (
                    explained.iter().find(|(known, _)| *known == key),
                    bugs.iter().find(|(known, _)| *known == key),
                ) {
                    (Some((_, why)), _) => (*why).to_owned(),
                    (None, Some((_, bug))) => format!("**BUG (reported)**: {bug}"),
                    (None, None) => "**UNEXPLAINED**".to_owned(),
                };
                let _ = writeln!(out, "  - `{}`: {why}", example.case.name());
            }
        }
    }
    out
}

/// Every case, one per line: direction, case, our verdict, native's.
pub fn outcomes_tsv(outcomes: &[Outcome]) -> String {
    let mut out = String::from("comparison\tcase\tours\tnative\n");
    for outcome in outcomes {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}",
            outcome.comparison().title(),
            outcome.case.name(),
            outcome.ours.label(),
            outcome.native.label(),
        );
    }
    out
}

/// Every disagreement, one per line: direction, case, our verdict, native's, header values.
pub fn disagreements_tsv(outcomes: &[Outcome]) -> String {
    let mut out = String::from("comparison\tcase\tours\tnative\tauthorization\n");
    for outcome in outcomes {
        let comparison = outcome.comparison();
        if matches!(comparison, Comparison::BothAllow | Comparison::BothDeny) {
            continue;
        }
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}",
            comparison.title(),
            outcome.case.name(),
            outcome.ours.label(),
            outcome.native.label(),
            outcome.case.authorization.join(" | ")
        );
    }
    out
}
