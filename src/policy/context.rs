//! The request's context for rule conditions: where the client is (its address as the proxy
//! determined it, or from `X-Forwarded-For` behind trusted proxies) and when (time windows).

use std::net::IpAddr;

use serde::Deserialize;

use crate::base::ids::ListIndex;
use crate::base::time::UnixSeconds;
use crate::base::FieldError;

/// An address block, `192.0.2.0/24` or `2001:db8::/32`; a bare address is its own block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network, as IPv6 (IPv4 as `::ffff:a.b.c.d`), host bits zero.
    network: u128,
    /// Prefix length over the 128 bits of the IPv6 form.
    prefix: u32,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => Some(prefix)
                .filter(|prefix| !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|prefix| prefix.parse::<u32>().ok())
                .filter(|prefix| *prefix <= width)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {width}"))?,
        };
        // IPv4 blocks live at the end of the IPv4-mapped range, 96 bits in.
        let prefix = if address.is_ipv4() {
            prefix.saturating_add(96)
        } else {
            prefix
        };
        let network = as_u128(address) & mask(prefix);
        if network != as_u128(address) {
            return Err(format!(
                "{text:?} has host bits set: write the network address"
            ));
        }
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        as_u128(address) & mask(self.prefix) == self.network
    }
}

/// An address as IPv6 bits; IPv4 and IPv4-mapped IPv6 addresses give the same value, so a
/// dual-stack listener's `::ffff:10.0.0.1` matches `10.0.0.0/8`.
fn as_u128(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(prefix: u32) -> u128 {
    u128::MAX
        .checked_shl(128_u32.saturating_sub(prefix))
        .unwrap_or(0)
}

/// Most entries an address list may have.
pub const MAX_LIST_ENTRIES: usize = 250_000;

/// A set of addresses given as blocks: disjoint ranges in order, so that a list of hundreds
/// of thousands of blocks is searched in a few steps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressSet {
    /// First and last address of each range (as in [`Cidr`]), sorted, not overlapping.
    ranges: Vec<(u128, u128)>,
}

/// Why an address list document was refused (it never replaces a good one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// More than [`MAX_LIST_ENTRIES`] entries.
    TooManyEntries,
    /// Not UTF-8 text.
    NotText,
    /// A line (counted from 1) that is not one address or block.
    BadLine { line: usize, problem: String },
    /// No address at all.
    Empty,
}

impl AddressSet {
    pub fn from_blocks(blocks: impl IntoIterator<Item = Cidr>) -> AddressSet {
        let mut ranges: Vec<(u128, u128)> = blocks
            .into_iter()
            .map(|block| (block.network, block.network | !mask(block.prefix)))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (first, last) in ranges {
            match merged.last_mut() {
                Some(previous) if first <= previous.1.saturating_add(1) => {
                    previous.1 = previous.1.max(last);
                }
                _ => merged.push((first, last)),
            }
        }
        AddressSet { ranges: merged }
    }

    /// Reads an address list: one address or CIDR block per line; blank lines and comments
    /// (from `#` or `;` to the end of the line, as in Spamhaus DROP and FireHOL lists) are
    /// ignored. Any other line refuses the whole document: a list read in part would let
    /// through the addresses it failed to read.
    pub fn parse_list(document: &[u8]) -> Result<AddressSet, ListError> {
        let text = std::str::from_utf8(document).map_err(|_| ListError::NotText)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut blocks = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let content = line.split(['#', ';']).next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            if blocks.len() >= MAX_LIST_ENTRIES {
                return Err(ListError::TooManyEntries);
            }
            let block = Cidr::parse(content).map_err(|problem| ListError::BadLine {
                line: index.saturating_add(1),
                problem,
            })?;
            blocks.push(block);
        }
        // An empty feed is far likelier a broken upload than an empty list: taking it would
        // switch a deny list off.
        if blocks.is_empty() {
            return Err(ListError::Empty);
        }
        Ok(AddressSet::from_blocks(blocks))
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = as_u128(address);
        // The last range starting at or before the address is the only one that can hold it.
        let after = self.ranges.partition_point(|(first, _)| *first <= address);
        after
            .checked_sub(1)
            .and_then(|index| self.ranges.get(index))
            .is_some_and(|(_, last)| address <= *last)
    }

    /// Disjoint ranges the set holds (adjacent and overlapping blocks merged).
    #[cfg(test)]
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }
}

/// The address lists a condition names, as they are at the moment of the decision.
pub trait AddressLists {
    /// The list in force, or why there is none.
    fn address_list(&self, list: ListIndex) -> Result<&AddressSet, ListMissing>;
}

/// An address list a condition names cannot be consulted: nothing is decided without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListMissing {
    pub list: ListIndex,
    /// Not fetched yet, and a fetch is pending: the request may wait for it. Otherwise the list
    /// cannot be had (fetches fail and nothing good is cached, or it is past its stale limit).
    pub pending: bool,
}

/// A condition on the client's address: in one of `any` or of the lists `any_lists` (when
/// either is given), and in none of `not` nor of the lists `not_lists`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressCondition {
    pub any: Option<Vec<Cidr>>,
    pub not: Vec<Cidr>,
    pub any_lists: Vec<ListIndex>,
    pub not_lists: Vec<ListIndex>,
}

impl AddressCondition {
    /// An unknown address meets no condition: it cannot be shown to be inside, nor outside.
    /// A list the answer depends on that cannot be consulted is an error, never a guess.
    pub fn holds(
        &self,
        address: Option<IpAddr>,
        lists: &dyn AddressLists,
    ) -> Result<bool, ListMissing> {
        let Some(address) = address else {
            return Ok(false);
        };
        let in_blocks = |blocks: &[Cidr]| blocks.iter().any(|block| block.contains(address));
        let in_lists = |indices: &[ListIndex]| -> Result<bool, ListMissing> {
            for list in indices {
                if lists.address_list(*list)?.contains(address) {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        if in_blocks(&self.not) || in_lists(&self.not_lists)? {
            return Ok(false);
        }
        if self.any.is_none() && self.any_lists.is_empty() {
            return Ok(true);
        }
        Ok(self.any.as_deref().is_some_and(in_blocks) || in_lists(&self.any_lists)?)
    }

    /// The remote lists this condition consults.
    pub fn lists(&self) -> impl Iterator<Item = ListIndex> + '_ {
        self.any_lists.iter().chain(&self.not_lists).copied()
    }
}

/// Days of the week and a span of the day, at a fixed offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes since local midnight: from (inclusive) to (exclusive); `from > to` spans
    /// midnight, `from == to` the whole day.
    pub from_minute: i64,
    pub to_minute: i64,
    pub utc_offset_seconds: i64,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl TimeWindow {
    pub fn contains(&self, now: UnixSeconds) -> bool {
        let local = now.saturating_add(self.utc_offset_seconds);
        let days = local.div_euclid(86_400);
        let minute = local.rem_euclid(86_400) / 60;
        // 1970-01-01 was a Thursday (index 3, Monday first).
        let weekday = days.saturating_add(3).rem_euclid(7);
        let (in_span, day) = if self.from_minute == self.to_minute {
            (true, weekday)
        } else if self.from_minute < self.to_minute {
            (
                (self.from_minute..self.to_minute).contains(&minute),
                weekday,
            )
        } else if minute >= self.from_minute {
            (true, weekday)
        } else {
            // After midnight in a span that began the day before: that day decides.
            (
                minute < self.to_minute,
                weekday.saturating_add(6).rem_euclid(7),
            )
        };
        in_span
            && usize::try_from(day)
                .ok()
                .and_then(|day| self.days.get(day))
                .copied()
                .unwrap_or(false)
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration.

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAddressCondition {
    any: Option<Vec<String>>,
    not: Option<Vec<String>>,
    any_lists: Option<Vec<String>>,
    not_lists: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeWindow {
    days: Option<Vec<String>>,
    hours: Option<RawHours>,
    utc_offset: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawHours {
    from: String,
    to: String,
}

/// `list_names`: the configuration's `address_lists`, by position.
pub(crate) fn validate_address_condition(
    field: &str,
    raw: RawAddressCondition,
    list_names: &[&str],
) -> Result<AddressCondition, FieldError> {
    let lists = |name: &str, names: Vec<String>| -> Result<Vec<ListIndex>, FieldError> {
        if names.is_empty() {
            return Err((format!("{field}.{name}"), "must not be empty".to_owned()));
        }
        names
            .iter()
            .enumerate()
            .map(|(index, wanted)| {
                list_names
                    .iter()
                    .position(|known| known == wanted)
                    .map(ListIndex::new)
                    .ok_or_else(|| {
                        (
                            format!("{field}.{name}[{index}]"),
                            format!("{wanted:?} is not one of the top-level `address_lists`"),
                        )
                    })
            })
            .collect()
    };
    let blocks = |name: &str, list: Vec<String>| -> Result<Vec<Cidr>, FieldError> {
        if list.is_empty() {
            return Err((format!("{field}.{name}"), "must not be empty".to_owned()));
        }
        list.iter()
            .enumerate()
            .map(|(index, text)| {
                Cidr::parse(text).map_err(|problem| (format!("{field}.{name}[{index}]"), problem))
            })
            .collect()
    };
    if raw.any.is_none() && raw.not.is_none() && raw.any_lists.is_none() && raw.not_lists.is_none()
    {
        return Err((
            field.to_owned(),
            "give at least one of `any`, `not`, `any_lists`, `not_lists`".to_owned(),
        ));
    }
    Ok(AddressCondition {
        any: raw.any.map(|list| blocks("any", list)).transpose()?,
        not: raw
            .not
            .map(|list| blocks("not", list))
            .transpose()?
            .unwrap_or_default(),
        any_lists: raw
            .any_lists
            .map(|names| lists("any_lists", names))
            .transpose()?
            .unwrap_or_default(),
        not_lists: raw
            .not_lists
            .map(|names| lists("not_lists", names))
            .transpose()?
            .unwrap_or_default(),
    })
}

pub(crate) fn validate_time_window(
    field: &str,
    raw: RawTimeWindow,
) -> Result<TimeWindow, FieldError> {
    let days = match raw.days {
        None => [true; 7],
        Some(names) => {
            if names.is_empty() {
                return Err((
                    format!("{field}.days"),
                    "must not be empty (leave it out for every day)".to_owned(),
                ));
            }
            let mut days = [false; 7];
            for (index, name) in names.iter().enumerate() {
                let day = DAY_NAMES
                    .iter()
                    .position(|known| known.eq_ignore_ascii_case(name))
                    .and_then(|day| days.get_mut(day))
                    .ok_or_else(|| {
                        (
                            format!("{field}.days[{index}]"),
                            format!("{name:?}: use mon, tue, wed, thu, fri, sat, sun"),
                        )
                    })?;
                *day = true;
            }
            days
        }
    };
    let has_hours = raw.hours.is_some();
    let (from_minute, to_minute) = match raw.hours {
        None => (0, 0),
        Some(hours) => (
            clock_minutes(&format!("{field}.hours.from"), &hours.from, false)?,
            clock_minutes(&format!("{field}.hours.to"), &hours.to, true)?,
        ),
    };
    let utc_offset_seconds = match raw.utc_offset {
        None => 0,
        Some(offset) => utc_offset(&format!("{field}.utc_offset"), &offset)?,
    };
    if !has_hours && days == [true; 7] {
        return Err((
            field.to_owned(),
            "give `days`, `hours` or both (a window of every day, all day, says nothing)"
                .to_owned(),
        ));
    }
    Ok(TimeWindow {
        days,
        from_minute,
        to_minute,
        utc_offset_seconds,
    })
}

/// `HH:MM` as minutes since midnight; `24:00` only as an end.
fn clock_minutes(field: &str, text: &str, is_end: bool) -> Result<i64, FieldError> {
    let problem = || {
        (
            field.to_owned(),
            format!("{text:?}: write the time as HH:MM, 00:00 to 23:59 (24:00 as an end)"),
        )
    };
    let (hours, minutes) = text.split_once(':').ok_or_else(problem)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(problem());
    }
    let hours: i64 = hours.parse().map_err(|_| problem())?;
    let minutes: i64 = minutes.parse().map_err(|_| problem())?;
    match (hours, minutes) {
        // Both bounded just above: no overflow.
        (0..=23, 0..=59) => Ok(hours.saturating_mul(60).saturating_add(minutes)),
        (24, 0) if is_end => Ok(0),
        _ => Err(problem()),
    }
}

/// `+HH:MM` or `-HH:MM` (or `Z`), at most 14 hours, as seconds.
fn utc_offset(field: &str, text: &str) -> Result<i64, FieldError> {
    if text == "Z" {
        return Ok(0);
    }
    let problem = || {
        (
            field.to_owned(),
            format!("{text:?}: write the offset as +HH:MM or -HH:MM, at most 14 hours"),
        )
    };
    let (sign, rest) = match text.split_at_checked(1) {
        Some(("+", rest)) => (1, rest),
        Some(("-", rest)) => (-1, rest),
        _ => return Err(problem()),
    };
    let minutes = clock_minutes(field, rest, false).map_err(|_| problem())?;
    if minutes > 14 * 60 {
        return Err(problem());
    }
    Ok(minutes.saturating_mul(60).saturating_mul(sign))
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_in_either_family() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.200.1.1")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(cidr("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!cidr("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!cidr("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(
            !cidr("0.0.0.0/0").contains(ip("2001:db8::1")),
            "IPv4 /0 is all IPv4 only"
        );
        assert!(cidr("::/0").contains(ip("203.0.113.9")));
    }

    #[test]
    fn bad_blocks_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "host",
            "::/129",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn any_and_not_lists() {
        let condition = AddressCondition {
            any: Some(vec![cidr("10.0.0.0/8")]),
            not: vec![cidr("10.6.0.0/16")],
            ..AddressCondition::default()
        };
        let holds = |address| condition.holds(address, &NoAddressLists).unwrap();
        assert!(holds(Some(ip("10.5.0.1"))));
        assert!(!holds(Some(ip("10.6.0.1"))));
        assert!(!holds(Some(ip("192.0.2.1"))));
        assert!(!holds(None), "an unknown address meets nothing");
        let deny_list = AddressCondition {
            not: vec![cidr("203.0.113.0/24")],
            ..AddressCondition::default()
        };
        assert!(deny_list
            .holds(Some(ip("192.0.2.1")), &NoAddressLists)
            .unwrap());
        assert!(!deny_list
            .holds(Some(ip("203.0.113.5")), &NoAddressLists)
            .unwrap());
    }

    /// No remote address lists: every list is unavailable.
    struct NoAddressLists;

    impl AddressLists for NoAddressLists {
        fn address_list(&self, list: ListIndex) -> Result<&AddressSet, ListMissing> {
            Err(ListMissing {
                list,
                pending: false,
            })
        }
    }

    /// Address lists as a test sets them: `None` is a list that cannot be had.
    struct FixedLists(Vec<Option<AddressSet>>);

    impl AddressLists for FixedLists {
        fn address_list(&self, list: ListIndex) -> Result<&AddressSet, ListMissing> {
            self.0
                .get(list.position())
                .and_then(Option::as_ref)
                .ok_or(ListMissing {
                    list,
                    pending: false,
                })
        }
    }

    #[test]
    fn address_lists_are_read_line_by_line_with_comments() {
        let document = b"; Spamhaus-style header\n\
            192.0.2.0/24 ; SBL000001\n\
            \n\
            # FireHOL-style comment\n\
            198.51.100.7\r\n\
            2001:db8::/32   \n\
            192.0.2.128/25\n";
        let set = AddressSet::parse_list(document).unwrap();
        assert_eq!(set.range_count(), 3, "the /25 merges into the /24");
        for inside in [
            "192.0.2.0",
            "192.0.2.255",
            "198.51.100.7",
            "2001:db8:ffff::1",
        ] {
            assert!(set.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "192.0.1.255",
            "192.0.3.0",
            "198.51.100.6",
            "198.51.100.8",
            "2001:db9::",
        ] {
            assert!(!set.contains(ip(outside)), "{outside}");
        }
        assert!(
            set.contains(ip("::ffff:192.0.2.9")),
            "IPv4-mapped reads as IPv4"
        );
        assert!(!AddressSet::default().contains(ip("192.0.2.1")));
    }

    #[test]
    fn adjacent_and_overlapping_blocks_merge_and_still_answer_exactly() {
        let set = AddressSet::from_blocks(
            [
                "10.0.0.0/9",
                "10.128.0.0/9",
                "10.1.0.0/16",
                "11.0.0.1",
                "11.0.0.3",
            ]
            .map(cidr),
        );
        assert_eq!(set.range_count(), 3);
        assert!(set.contains(ip("10.255.255.255")));
        assert!(set.contains(ip("11.0.0.1")));
        assert!(!set.contains(ip("11.0.0.2")));
        assert!(set.contains(ip("11.0.0.3")));
        assert!(!set.contains(ip("9.255.255.255")));
        let everything = AddressSet::from_blocks([cidr("::/0")]);
        assert!(everything.contains(ip("2001:db8::1")));
        assert!(everything.contains(ip("203.0.113.1")));
    }

    #[test]
    fn a_bad_line_refuses_the_whole_list() {
        assert_eq!(
            AddressSet::parse_list(b"192.0.2.0/24\n192.0.2.1/24\n"),
            Err(ListError::BadLine {
                line: 2,
                problem: "\"192.0.2.1/24\" has host bits set: write the network address".to_owned()
            })
        );
        assert!(matches!(
            AddressSet::parse_list(b"192.0.2.1 192.0.2.2\n"),
            Err(ListError::BadLine { line: 1, .. })
        ));
        assert!(matches!(
            AddressSet::parse_list(b"<html>not a list</html>"),
            Err(ListError::BadLine { line: 1, .. })
        ));
        assert_eq!(AddressSet::parse_list(b"\xff\xfe"), Err(ListError::NotText));
        let too_many = "10.0.0.1\n".repeat(MAX_LIST_ENTRIES + 1);
        assert_eq!(
            AddressSet::parse_list(too_many.as_bytes()),
            Err(ListError::TooManyEntries)
        );
        for empty in [&b""[..], b"\n", b"# nothing listed today\n; none\n"] {
            assert_eq!(AddressSet::parse_list(empty), Err(ListError::Empty));
        }
        let with_bom = AddressSet::parse_list("\u{feff}192.0.2.0/24\n".as_bytes()).unwrap();
        assert!(with_bom.contains(ip("192.0.2.1")));
    }

    #[test]
    fn list_conditions_consult_the_lists_and_never_guess() {
        let lists = FixedLists(vec![
            Some(AddressSet::from_blocks([cidr("203.0.113.0/24")])),
            None,
        ]);
        let deny_listed = AddressCondition {
            any_lists: vec![ListIndex::new(0)],
            ..AddressCondition::default()
        };
        assert_eq!(deny_listed.holds(Some(ip("203.0.113.9")), &lists), Ok(true));
        assert_eq!(deny_listed.holds(Some(ip("192.0.2.1")), &lists), Ok(false));
        let not_listed = AddressCondition {
            not_lists: vec![ListIndex::new(0)],
            ..AddressCondition::default()
        };
        assert_eq!(not_listed.holds(Some(ip("203.0.113.9")), &lists), Ok(false));
        assert_eq!(not_listed.holds(Some(ip("192.0.2.1")), &lists), Ok(true));
        let inline_or_list = AddressCondition {
            any: Some(vec![cidr("10.0.0.0/8")]),
            any_lists: vec![ListIndex::new(0)],
            ..AddressCondition::default()
        };
        assert_eq!(inline_or_list.holds(Some(ip("10.1.1.1")), &lists), Ok(true));
        assert_eq!(
            inline_or_list.holds(Some(ip("203.0.113.1")), &lists),
            Ok(true)
        );
        assert_eq!(
            inline_or_list.holds(Some(ip("192.0.2.1")), &lists),
            Ok(false)
        );
        let missing = AddressCondition {
            not_lists: vec![ListIndex::new(1)],
            ..AddressCondition::default()
        };
        assert_eq!(
            missing.holds(Some(ip("192.0.2.1")), &lists),
            Err(ListMissing {
                list: ListIndex::new(1),
                pending: false
            })
        );
        assert_eq!(
            missing.holds(None, &lists),
            Ok(false),
            "unknown address: no list needed"
        );
    }

    fn window(days: &[&str], hours: Option<(&str, &str)>, offset: &str) -> TimeWindow {
        validate_time_window(
            "w",
            RawTimeWindow {
                days: Some(days.iter().map(|day| (*day).to_owned()).collect()),
                hours: hours.map(|(from, to)| RawHours {
                    from: from.to_owned(),
                    to: to.to_owned(),
                }),
                utc_offset: Some(offset.to_owned()),
            },
        )
        .unwrap()
    }

    /// 2026-11-27, a Friday, at 00:00 UTC.
    const FRIDAY: UnixSeconds = 1_795_737_600;

    #[test]
    fn time_windows_by_day_hour_and_offset() {
        let office = window(
            &["mon", "tue", "wed", "thu", "fri"],
            Some(("09:00", "17:30")),
            "+01:00",
        );
        // Friday 08:00 UTC is 09:00 at +01:00.
        assert!(office.contains(FRIDAY + 8 * 3600));
        assert!(!office.contains(FRIDAY + 8 * 3600 - 1));
        assert!(office.contains(FRIDAY + 16 * 3600 + 29 * 60));
        assert!(
            !office.contains(FRIDAY + 16 * 3600 + 30 * 60),
            "the end is exclusive"
        );
        // Saturday 10:00 local.
        assert!(!office.contains(FRIDAY + 86_400 + 9 * 3600));
        // A night shift from Friday 22:00 to 06:00 runs into Saturday morning.
        let night = window(&["fri"], Some(("22:00", "06:00")), "Z");
        assert!(night.contains(FRIDAY + 23 * 3600));
        assert!(night.contains(FRIDAY + 86_400 + 5 * 3600));
        assert!(!night.contains(FRIDAY + 86_400 + 6 * 3600));
        assert!(
            !night.contains(FRIDAY + 5 * 3600),
            "Friday early morning belongs to Thursday"
        );
        let weekend = window(&["sat", "sun"], None, "-05:00");
        assert!(
            !weekend.contains(FRIDAY + 86_400 + 4 * 3600),
            "still Friday at -05:00"
        );
        assert!(weekend.contains(FRIDAY + 86_400 + 5 * 3600));
        let until_midnight = window(&["fri"], Some(("18:00", "24:00")), "Z");
        assert!(until_midnight.contains(FRIDAY + 86_400 - 1));
        assert!(!until_midnight.contains(FRIDAY + 86_400));
    }

    #[test]
    fn bad_windows_and_addresses_name_the_field() {
        let bad = |days: Option<Vec<&str>>, hours: Option<(&str, &str)>, offset: Option<&str>| {
            validate_time_window(
                "w",
                RawTimeWindow {
                    days: days.map(|days| days.iter().map(|day| (*day).to_owned()).collect()),
                    hours: hours.map(|(from, to)| RawHours {
                        from: from.to_owned(),
                        to: to.to_owned(),
                    }),
                    utc_offset: offset.map(str::to_owned),
                },
            )
            .unwrap_err()
            .0
        };
        assert_eq!(bad(Some(vec!["funday"]), None, None), "w.days[0]");
        assert_eq!(bad(Some(vec![]), None, None), "w.days");
        assert_eq!(bad(None, Some(("9:00", "17:00")), None), "w.hours.from");
        assert_eq!(bad(None, Some(("09:00", "24:01")), None), "w.hours.to");
        assert_eq!(bad(None, Some(("24:00", "05:00")), None), "w.hours.from");
        assert_eq!(
            bad(None, Some(("09:00", "17:00")), Some("+15:00")),
            "w.utc_offset"
        );
        assert_eq!(
            bad(None, Some(("09:00", "17:00")), Some("01:00")),
            "w.utc_offset"
        );
        assert_eq!(bad(None, None, None), "w");
        let address = |any: Option<Vec<&str>>, not: Option<Vec<&str>>| {
            validate_address_condition(
                "a",
                RawAddressCondition {
                    any: any.map(|list| list.iter().map(|item| (*item).to_owned()).collect()),
                    not: not.map(|list| list.iter().map(|item| (*item).to_owned()).collect()),
                    any_lists: None,
                    not_lists: None,
                },
                &[],
            )
            .unwrap_err()
            .0
        };
        assert_eq!(address(None, None), "a");
        assert_eq!(address(Some(vec![]), None), "a.any");
        assert_eq!(
            address(None, Some(vec!["10.0.0.0/8", "10.0.0.1/8"])),
            "a.not[1]"
        );
    }
}
