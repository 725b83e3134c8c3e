//! The fetch protocol with several workers on one in-memory shared data, at fixed times.

#![allow(clippy::arithmetic_side_effects)]

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::*;
use crate::base::http::HttpUri;
use crate::fetch::remote::Location;

const T0: UnixSeconds = 1_700_000_000;
const LIST: &[u8] = b"192.0.2.0/24\n";
/// With a one-second timeout, a call is given up on two seconds after it started, and a lease
/// lasts three (the call and a second of slack).
const TIMEOUT_MS: u64 = 1_000;

/// Shared data as a proxy holds it: every write bumps the record's CAS, and a write against a
/// CAS succeeds only if the record is still at it.
#[derive(Clone, Default)]
struct Store(Rc<RefCell<Records>>);

/// Each record's value and CAS, by name.
type Records = BTreeMap<String, (Vec<u8>, u32)>;

impl SharedData for Store {
    fn get(&self, name: &str) -> Result<Record, Refused> {
        Ok(match self.0.borrow().get(name) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&mut self, name: &str, value: &[u8], cas: Option<u32>) -> Result<(), Refused> {
        let mut records = self.0.borrow_mut();
        let current = records.get(name).map(|(_, cas)| *cas);
        if cas.is_some() && cas != current {
            return Err(Refused);
        }
        let next = current.map_or(1, |cas| cas + 1);
        records.insert(name.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

impl Store {
    fn record(&self, name: &str) -> Vec<u8> {
        self.0
            .borrow()
            .get(name)
            .map(|(value, _)| value.clone())
            .unwrap()
    }

    fn lease(&self) -> Lease {
        let name = self.name_with("wasm_jwt_authn.lease.address_list.");
        Lease::decode(&self.record(&name)).unwrap()
    }

    fn published(&self) -> SharedRecord {
        let name = self.name_with("wasm_jwt_authn.address_list.");
        SharedRecord::decode(&self.record(&name)).unwrap()
    }

    fn name_with(&self, prefix: &str) -> String {
        self.0
            .borrow()
            .keys()
            .find(|name| name.starts_with(prefix))
            .cloned()
            .unwrap()
    }
}

/// Settings of a source at `uri`, fetched through `upstream`, with this file's timings.
fn settings(uri: &str, upstream: &str) -> RemoteSettings {
    RemoteSettings {
        location: Location::Direct(HttpUri::parse(uri).unwrap()),
        upstream: upstream.to_owned(),
        jwks_upstream: None,
        timeout_ms: TIMEOUT_MS,
        refresh_seconds: 600,
        max_stale_seconds: 3_600,
        min_refetch_seconds: 30,
        allow_http: false,
    }
}

fn list_spec(now: UnixSeconds) -> SourceSpec {
    let settings = settings("https://lists.example/deny.txt", "lists");
    SourceSpec::address_list("deny", &settings, now, 0)
}

/// A worker of the proxy with one fetched address list, its records created.
fn worker(id: u64, store: &mut Store, now: UnixSeconds) -> Sources<&'static str> {
    let sources = Sources::new(vec![], vec![list_spec(now)], id);
    sources.create_records(store);
    sources
}

const LIST_ID: SourceId = SourceId(0);

fn ok_answer() -> Answer {
    Answer {
        status: Some(200),
        body: Some(LIST.to_vec()),
        cache_control: None,
    }
}

fn has_list(sources: &Sources<&str>, now: UnixSeconds) -> bool {
    matches!(
        sources.address_list_now(ListIndex::new(0), now),
        InForce::Fresh(_)
    )
}

/// Ticks a worker and, if it asks for a fetch, says the host dispatched it as `token`.
fn tick(
    sources: &mut Sources<&'static str>,
    store: &mut Store,
    now: UnixSeconds,
    token: u32,
) -> (bool, Step<&'static str>) {
    let step = sources.tick_source(LIST_ID, store, now);
    let Some(dispatch) = &step.dispatch else {
        return (false, step);
    };
    assert_eq!(dispatch.request.upstream, "lists");
    assert_eq!(dispatch.accept, "text/plain");
    let reported = sources.dispatched(LIST_ID, Ok(token), store, now);
    assert!(reported.events.is_empty() && reported.wake.is_empty());
    (true, step)
}

#[test]
fn two_workers_race_for_the_lease_and_one_fetches_for_both() {
    let mut store = Store::default();
    let mut first = worker(1, &mut store, T0);
    let mut second = worker(2, &mut store, T0);
    assert!(second
        .park(
            7,
            RemoteSource::AddressList(ListIndex::new(0)),
            false,
            "waiting",
            T0
        )
        .is_ok());

    assert!(
        tick(&mut first, &mut store, T0, 11).0,
        "the first to tick takes the lease"
    );
    assert_eq!(store.lease().holder, 1);
    assert!(
        !tick(&mut second, &mut store, T0, 21).0,
        "the other does not fetch"
    );

    let step = first.on_answer(LIST_ID, ok_answer(), &mut store, T0);
    assert_eq!(
        step.events,
        vec![FetchEvent::Succeeded(SourceKind::AddressList)]
    );
    assert_eq!(store.lease().holder, 0, "the lease is freed");
    assert_eq!(store.published().generation, 1);
    assert!(has_list(&first, T0));

    // The other worker adopts the published list on its next look, without a fetch of its own,
    // and the request it held wakes.
    let (fetched, step) = tick(&mut second, &mut store, T0 + 1, 22);
    assert!(!fetched);
    assert_eq!(
        step.events,
        vec![FetchEvent::Adopted(SourceKind::AddressList)]
    );
    assert!(has_list(&second, T0 + 1));
    let woken: Vec<_> = second
        .ready_waiters(T0 + 1)
        .into_iter()
        .map(|w| w.request)
        .collect();
    assert_eq!(woken, vec!["waiting"]);
    // Adopted once: an unchanged record is no news.
    assert!(tick(&mut second, &mut store, T0 + 2, 23)
        .1
        .events
        .is_empty());
}

#[test]
fn a_publication_against_an_outdated_record_is_refused() {
    let mut store = Store::default();
    let mut first = worker(1, &mut store, T0);
    assert!(tick(&mut first, &mut store, T0, 11).0);

    // While the call is in flight, another worker publishes a newer record.
    let newer = SharedRecord {
        generation: 5,
        attempted_at: T0,
        next_fetch_at: T0 + 600,
        failures: 0,
        document: Some(crate::fetch::remote::SharedDocument {
            fetched_at: T0,
            refresh_at: T0 + 600,
            document: b"198.51.100.0/24\n".to_vec(),
        }),
    };
    let name = store.name_with("wasm_jwt_authn.address_list.");
    store.set(&name, &newer.encode(), None).unwrap();

    first.on_answer(LIST_ID, ok_answer(), &mut store, T0);
    assert_eq!(
        store.published(),
        newer,
        "the slower worker's news does not overwrite newer"
    );
    assert_eq!(store.lease().holder, 0, "the lease is freed all the same");
    // Not having published, the worker still sees the newer record as news and adopts it.
    let (_, step) = tick(&mut first, &mut store, T0 + 1, 12);
    assert_eq!(
        step.events,
        vec![FetchEvent::Adopted(SourceKind::AddressList)]
    );
    assert!(matches!(
        first.address_list_now(ListIndex::new(0), T0 + 1),
        InForce::Fresh(set) if set.contains("198.51.100.9".parse().unwrap())
    ));
}

#[test]
fn an_expired_lease_is_taken_over() {
    let mut store = Store::default();
    let mut sources = worker(2, &mut store, T0);
    let name = store.name_with("wasm_jwt_authn.lease.address_list.");
    let held = Lease {
        holder: 9,
        expires_at: T0 + 5,
    };
    store.set(&name, &held.encode(), None).unwrap();

    for now in T0..T0 + 5 {
        assert!(!tick(&mut sources, &mut store, now, 1).0, "held at {now}");
    }
    assert!(
        tick(&mut sources, &mut store, T0 + 5, 1).0,
        "expired at its time"
    );
    assert_eq!(store.lease().holder, 2);
}

#[test]
fn a_holder_that_dies_mid_fetch_is_replaced() {
    let mut store = Store::default();
    let mut dying = worker(1, &mut store, T0);
    let mut other = worker(2, &mut store, T0);
    assert!(other
        .park(
            7,
            RemoteSource::AddressList(ListIndex::new(0)),
            false,
            "waiting",
            T0
        )
        .is_ok());
    assert!(tick(&mut dying, &mut store, T0, 11).0);
    drop(dying); // Never answers, never ticks again.

    let lease = store.lease();
    assert_eq!(
        lease,
        Lease {
            holder: 1,
            expires_at: T0 + 3
        }
    );
    let mut fetched_at = None;
    for now in T0..T0 + 10 {
        if tick(&mut other, &mut store, now, 21).0 {
            fetched_at = Some(now);
            break;
        }
    }
    assert_eq!(
        fetched_at,
        Some(T0 + 3),
        "taken over when the lease expires"
    );
    let step = other.on_answer(LIST_ID, ok_answer(), &mut store, T0 + 3);
    assert_eq!(
        step.events,
        vec![FetchEvent::Succeeded(SourceKind::AddressList)]
    );
    let woken: Vec<_> = step.wake.into_iter().map(|waiter| waiter.request).collect();
    assert_eq!(
        woken,
        vec!["waiting"],
        "the waiting request wakes with the list"
    );
    assert!(has_list(&other, T0 + 3));
}

#[test]
fn a_dispatch_the_host_refuses_is_a_failed_attempt() {
    let mut store = Store::default();
    let mut sources = worker(1, &mut store, T0);
    assert!(sources
        .park(
            7,
            RemoteSource::AddressList(ListIndex::new(0)),
            false,
            "waiting",
            T0
        )
        .is_ok());
    let step = sources.tick_source(LIST_ID, &mut store, T0);
    assert!(step.dispatch.is_some());

    let step = sources.dispatched(LIST_ID, Err(Refused), &mut store, T0);
    assert_eq!(
        step.events,
        vec![FetchEvent::Failed {
            kind: SourceKind::AddressList,
            label: "address list \"deny\"".to_owned(),
            error: FetchError::Dispatch,
        }]
    );
    assert_eq!(
        step.events.first().and_then(FetchEvent::warning).as_deref(),
        Some("address list \"deny\": fetch failed: dispatch")
    );
    let woken: Vec<_> = step.wake.into_iter().map(|waiter| waiter.request).collect();
    assert_eq!(
        woken,
        vec!["waiting"],
        "the attempt ended: waiting cannot help now"
    );
    assert_eq!(store.lease().holder, 0);
    let published = store.published();
    assert_eq!((published.generation, published.failures), (1, 1));
    assert_eq!(
        published.next_fetch_at,
        T0 + 1,
        "retried after the first backoff"
    );
    assert!(sources.call_of(0).is_none());
}

#[test]
fn a_late_answer_after_the_deadline_finds_nothing() {
    let mut store = Store::default();
    let mut sources = worker(1, &mut store, T0);
    assert!(tick(&mut sources, &mut store, T0, 11).0);
    assert_eq!(sources.call_of(11), Some(LIST_ID));
    assert!(
        tick(&mut sources, &mut store, T0 + 2, 12)
            .1
            .events
            .is_empty(),
        "not yet"
    );

    let (_, step) = tick(&mut sources, &mut store, T0 + 3, 12);
    assert_eq!(
        step.events,
        vec![FetchEvent::Failed {
            kind: SourceKind::AddressList,
            label: "address list \"deny\"".to_owned(),
            error: FetchError::Timeout,
        }]
    );
    assert_eq!(sources.call_of(11), None, "the late answer matches no call");
    assert_eq!(store.lease().holder, 0);
}

#[test]
fn a_reconfiguration_during_a_wait_releases_the_requests_and_keeps_the_news() {
    let mut store = Store::default();
    let mut old = worker(1, &mut store, T0);
    for (context, request) in [(7, "first"), (8, "second")] {
        assert!(old
            .park(
                context,
                RemoteSource::AddressList(ListIndex::new(0)),
                false,
                request,
                T0
            )
            .is_ok());
    }
    assert!(tick(&mut old, &mut store, T0, 11).0);
    assert!(old.is_parked(7));
    let released: Vec<_> = old
        .take_all_waiters()
        .into_iter()
        .map(|w| w.request)
        .collect();
    assert_eq!(released, vec!["first", "second"]);
    assert!(!old.is_parked(7) && !old.is_parked(8));

    // The old configuration's call still completes and publishes; the new one, with the same
    // source, adopts the list instead of fetching again.
    old.on_answer(LIST_ID, ok_answer(), &mut store, T0);
    let mut new = worker(1, &mut store, T0);
    let (fetched, step) = tick(&mut new, &mut store, T0, 12);
    assert!(!fetched);
    assert_eq!(
        step.events,
        vec![FetchEvent::Adopted(SourceKind::AddressList)]
    );
    assert!(has_list(&new, T0));
}

#[test]
fn a_request_that_cannot_wait_is_given_back() {
    let mut store = Store::default();
    let mut sources = worker(1, &mut store, T0);
    assert_eq!(
        sources.park(
            7,
            RemoteSource::AddressList(ListIndex::new(1)),
            false,
            "unknown list",
            T0
        ),
        Err("unknown list")
    );
    assert_eq!(
        sources.park(
            7,
            RemoteSource::Keys(ProviderIndex::new(0)),
            false,
            "no such provider",
            T0
        ),
        Err("no such provider")
    );
    // A refetch counts as an attempt at once; another within the rate limit cannot help.
    assert!(tick(&mut sources, &mut store, T0, 11).0);
    sources.on_answer(LIST_ID, ok_answer(), &mut store, T0);
    assert_eq!(
        sources.park(
            7,
            RemoteSource::AddressList(ListIndex::new(0)),
            true,
            "refetch",
            T0 + 1
        ),
        Err("refetch")
    );
}

#[test]
fn answers_are_read_within_the_source_limit() {
    let mut store = Store::default();
    let sources = worker(1, &mut store, T0);
    assert_eq!(sources.readable_body(LIST_ID, Some(200), 10), Some(10));
    assert_eq!(sources.readable_body(LIST_ID, Some(200), usize::MAX), None);
    assert_eq!(sources.readable_body(LIST_ID, Some(503), 1_000), Some(64));
    assert_eq!(sources.readable_body(LIST_ID, None, 10), Some(10));
}

#[test]
fn workers_get_distinct_ids() {
    let mut store = Store::default();
    let ids: Vec<_> = (0..3).map(|_| allocate_worker_id(&mut store)).collect();
    assert_eq!(ids, vec![Some(1), Some(2), Some(3)]);
}

fn keys_spec(now: UnixSeconds) -> SourceSpec {
    let settings = settings("https://idp.example/jwks", "idp");
    SourceSpec::keys(
        "corp",
        "https://idp.example",
        &[Algorithm::Es256],
        &settings,
        now,
        0,
    )
}

/// One fetch of `id` by `sources`, answered with `answer`.
fn fetch(
    sources: &mut Sources<&'static str>,
    id: SourceId,
    store: &mut Store,
    now: UnixSeconds,
    answer: Answer,
) -> Step<&'static str> {
    let step = sources.tick_source(id, store, now);
    let dispatch = step.dispatch.expect("a fetch is due");
    assert_eq!(dispatch.request.upstream, "idp");
    sources.dispatched(id, Ok(1), store, now);
    sources.on_answer(id, answer, store, now)
}

#[test]
fn a_worker_refusing_for_want_of_keys_first_adopts_those_another_worker_fetched() {
    const CORP: ProviderIndex = ProviderIndex::new(1);
    let mut store = Store::default();
    // Provider 0 has inline keys: no source of its own.
    let mut fetching = Sources::new(vec![None, Some(keys_spec(T0))], vec![], 1);
    let mut refusing: Sources<&str> = Sources::new(vec![None, Some(keys_spec(T0))], vec![], 2);
    fetching.create_records(&mut store);
    refusing.create_records(&mut store);
    assert!(Sources::<()>::new(vec![None], vec![], 3).is_empty());
    assert!(!fetching.is_empty());
    let ids: Vec<SourceId> = fetching.ids().collect();
    assert_eq!(ids.iter().map(|id| id.index()).collect::<Vec<_>>(), vec![1]);
    let id = ids[0];
    assert_eq!(fetching.label(id), "provider \"corp\"");
    assert_eq!(
        fetching.gauges(id, T0),
        Some((0, false)),
        "nothing fetched yet"
    );

    // The first attempt fails, and the other worker adopts the failure: no keys anywhere.
    let failed = Answer {
        status: Some(500),
        body: Some(b"unavailable".to_vec()),
        cache_control: None,
    };
    fetch(&mut fetching, id, &mut store, T0, failed);
    refusing.tick_source(id, &mut store, T0);
    assert!(matches!(refusing.keys_now(CORP, T0), InForce::Unavailable));
    assert!(
        refusing.adopt_if_unavailable(&store, T0).is_empty(),
        "no news"
    );

    // The retry succeeds; the other worker has not ticked since.
    let jwks = serde_json::to_vec(&crate::support::jwks(&[crate::support::TestKey::P256])).unwrap();
    let fetched = Answer {
        status: Some(200),
        body: Some(jwks),
        cache_control: None,
    };
    fetch(&mut fetching, id, &mut store, T0 + 2, fetched);
    assert!(matches!(fetching.keys_now(CORP, T0 + 2), InForce::Fresh(_)));
    assert_eq!(fetching.gauges(id, T0 + 62), Some((60, false)));
    assert!(matches!(
        refusing.keys_now(CORP, T0 + 3),
        InForce::Unavailable
    ));
    assert_eq!(
        refusing.adopt_if_unavailable(&store, T0 + 3),
        vec![FetchEvent::Adopted(SourceKind::Keys)]
    );
    assert!(matches!(refusing.keys_now(CORP, T0 + 3), InForce::Fresh(_)));
    assert!(refusing.adopt_if_unavailable(&store, T0 + 3).is_empty());
    // Past the refresh, the keys are stale until the next fetch.
    assert_eq!(refusing.gauges(id, T0 + 2 + 600), Some((600, true)));
}

#[test]
fn a_request_that_leaves_while_waiting_is_not_woken() {
    let mut store = Store::default();
    let mut sources = worker(1, &mut store, T0);
    for context in [7, 8] {
        let waiting_for = RemoteSource::AddressList(ListIndex::new(0));
        assert!(sources
            .park(context, waiting_for, false, "request", T0)
            .is_ok());
    }
    assert!(tick(&mut sources, &mut store, T0, 11).0);
    // The client of request 7 went away (the host destroyed its context).
    sources.forget(7);
    assert!(!sources.is_parked(7) && sources.is_parked(8));
    let step = sources.on_answer(LIST_ID, ok_answer(), &mut store, T0);
    let woken: Vec<u32> = step.wake.iter().map(|waiter| waiter.context_id).collect();
    assert_eq!(woken, vec![8]);
}
