//! The introspection calls of one worker and the requests waiting for them, host-free.
//!
//! At most one call per token at a time: a request presenting a token that is being asked
//! about joins the call. The adapter dispatches a call from the root context, so a call
//! outlives the request that started it (the others still wait for it). When the answer comes
//! it is remembered ([`IntrospectionCache`]) and every waiting request is decided again; a
//! call that fails leaves nothing remembered, and its requests get `503`.
//!
//! Bounded: at most [`MAX_CALLS`] calls in flight and [`MAX_WAITING`] requests waiting per
//! worker; past either, a request is decided at once (`503`).
//!
//! Sans-I/O: [`Calls::park`] says whether a call must be dispatched ([`Parked::Dispatch`]);
//! the adapter dispatches it and hands back the host's id ([`Calls::started`]) or, refused,
//! takes the request back ([`PendingCall::into_request`]). [`Calls::answered`] and
//! [`Calls::overdue`] give back the calls that ended, and [`Calls::finish`] the requests to
//! decide again.

use crate::base::ids::ProviderIndex;
use crate::base::time::{self, UnixSeconds};

use super::{request, Introspected, IntrospectionCache, IntrospectionCall};
use super::{IntrospectionError, IntrospectionSettings};

/// Calls in flight per worker.
pub const MAX_CALLS: usize = 1_000;
/// Requests waiting for calls per worker.
pub const MAX_WAITING: usize = 10_000;

/// A waiting request: the host's id of its stream, and the request as the adapter keeps it.
pub type Waiting<R> = (u32, R);

/// A call in flight, or one that ended (taken out of the table).
pub struct Call<R> {
    /// The host's id for the call.
    id: u32,
    provider: ProviderIndex,
    token: String,
    /// Given up on (as failed) after this.
    deadline: UnixSeconds,
    waiters: Vec<Waiting<R>>,
}

impl<R> Call<R> {
    pub fn provider(&self) -> ProviderIndex {
        self.provider
    }
}

/// A call to dispatch, holding the request that needs it until the host took it.
pub struct PendingCall<R> {
    provider: ProviderIndex,
    token: String,
    timeout_ms: u64,
    waiter: Waiting<R>,
}

impl<R> PendingCall<R> {
    /// The host refused the call: the request, to be decided again now, finally.
    pub fn into_request(self) -> R {
        self.waiter.1
    }
}

/// Where [`Calls::park`] put a request.
pub enum Parked<R> {
    /// Onto the call already in flight about its token.
    Joined,
    /// Nowhere yet: `call` is to be dispatched, then reported with [`Calls::started`].
    Dispatch {
        call: IntrospectionCall,
        pending: PendingCall<R>,
    },
}

/// How an ended call went, for the adapter's counters and logs, and who waited for it.
pub struct Finished<R> {
    /// Whether the token is active, or why there is no answer.
    pub outcome: Result<bool, IntrospectionError>,
    pub waiters: Vec<Waiting<R>>,
}

/// One worker's calls in flight.
pub struct Calls<R> {
    calls: Vec<Call<R>>,
}

impl<R> Default for Calls<R> {
    fn default() -> Self {
        Calls { calls: Vec::new() }
    }
}

impl<R> Calls<R> {
    pub fn is_parked(&self, context_id: u32) -> bool {
        self.calls
            .iter()
            .any(|call| call.waiters.iter().any(|(waiter, _)| *waiter == context_id))
    }

    /// The request went away while waiting; its call goes on for the others (and the cache).
    pub fn forget(&mut self, context_id: u32) {
        for call in &mut self.calls {
            call.waiters.retain(|(waiter, _)| *waiter != context_id);
        }
    }

    fn waiting(&self) -> usize {
        self.calls.iter().map(|call| call.waiters.len()).sum()
    }

    /// Parks the request on the call about `token`, or says which call to dispatch when none
    /// is in flight. `Err` gives the request back when it cannot wait (too many waiting or in
    /// flight; `settings` `None`: the provider does not introspect): decide it again now,
    /// finally.
    pub fn park(
        &mut self,
        provider: ProviderIndex,
        token: String,
        settings: Option<&IntrospectionSettings>,
        waiter: Waiting<R>,
    ) -> Result<Parked<R>, R> {
        if self.waiting() >= MAX_WAITING {
            return Err(waiter.1);
        }
        if let Some(call) = self
            .calls
            .iter_mut()
            .find(|call| call.provider == provider && call.token == token)
        {
            call.waiters.push(waiter);
            return Ok(Parked::Joined);
        }
        if self.calls.len() >= MAX_CALLS {
            return Err(waiter.1);
        }
        let Some(settings) = settings else {
            return Err(waiter.1);
        };
        Ok(Parked::Dispatch {
            call: request(settings, &token),
            pending: PendingCall {
                provider,
                token,
                timeout_ms: settings.timeout_ms,
                waiter,
            },
        })
    }

    /// The host dispatched the pending call as `id` at `now`.
    pub fn started(&mut self, pending: PendingCall<R>, id: u32, now: UnixSeconds) {
        self.calls.push(Call {
            id,
            provider: pending.provider,
            token: pending.token,
            deadline: now.saturating_add(time::call_seconds(pending.timeout_ms)),
            waiters: vec![pending.waiter],
        });
    }

    /// The call the host answered as `id`, out of the table; `None`: not one of ours (or one
    /// given up on).
    pub fn answered(&mut self, id: u32) -> Option<Call<R>> {
        let position = self.calls.iter().position(|call| call.id == id)?;
        Some(self.calls.swap_remove(position))
    }

    /// The calls past their deadline, out of the table: a late answer finds nothing to match.
    pub fn overdue(&mut self, now: UnixSeconds) -> Vec<Call<R>> {
        let (overdue, pending) = std::mem::take(&mut self.calls)
            .into_iter()
            .partition(|call| now > call.deadline);
        self.calls = pending;
        overdue
    }

    /// A new configuration replaces this one: every waiting request, to be decided now.
    pub fn take_all(&mut self) -> Vec<Waiting<R>> {
        std::mem::take(&mut self.calls)
            .into_iter()
            .flat_map(|call| call.waiters)
            .collect()
    }

    /// Remembers an ended call's answer in `cache` (a failure is not remembered; `settings`:
    /// the provider's, for how long) and gives back its requests.
    pub fn finish(
        call: Call<R>,
        answer: Result<Introspected, IntrospectionError>,
        settings: Option<&IntrospectionSettings>,
        cache: &mut IntrospectionCache,
        now: UnixSeconds,
    ) -> Finished<R> {
        let outcome = match answer {
            Ok(answer) => {
                let active = matches!(answer, Introspected::Active(_));
                if let Some(settings) = settings {
                    cache.insert(call.provider, &call.token, answer, settings, now);
                }
                Ok(active)
            }
            Err(error) => Err(error),
        };
        Finished {
            outcome,
            waiters: call.waiters,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::base::http::HttpUri;
    use crate::introspection::CACHE_CAPACITY;

    fn settings(timeout_ms: u64) -> IntrospectionSettings {
        IntrospectionSettings {
            endpoint: HttpUri::parse("https://idp.example/introspect").unwrap(),
            upstream: "idp".to_owned(),
            client_id: "filter".to_owned(),
            client_secret: "secret".to_owned(),
            timeout_ms,
            cache_seconds: 60,
            negative_cache_seconds: 10,
        }
    }

    fn dispatch<R: std::fmt::Debug>(parked: Result<Parked<R>, R>) -> PendingCall<R> {
        match parked {
            Ok(Parked::Dispatch { pending, .. }) => pending,
            Ok(Parked::Joined) => panic!("joined instead of dispatching"),
            Err(request) => panic!("refused {request:?}"),
        }
    }

    #[test]
    fn one_call_per_token_and_the_others_join_it() {
        let settings = settings(1_000);
        let mut calls = Calls::default();
        let parked = calls.park(
            ProviderIndex::new(0),
            "t1".to_owned(),
            Some(&settings),
            (1, "first"),
        );
        let Ok(Parked::Dispatch { call, pending }) = parked else {
            panic!("the first request must dispatch");
        };
        assert_eq!(call.upstream, "idp");
        assert_eq!(call.body, b"token=t1&token_type_hint=access_token");
        calls.started(pending, 77, 100);
        assert!(matches!(
            calls.park(
                ProviderIndex::new(0),
                "t1".to_owned(),
                Some(&settings),
                (2, "second")
            ),
            Ok(Parked::Joined)
        ));
        // Another token, or the same token at another provider, is another call.
        dispatch(calls.park(
            ProviderIndex::new(0),
            "t2".to_owned(),
            Some(&settings),
            (3, "third"),
        ));
        dispatch(calls.park(
            ProviderIndex::new(1),
            "t1".to_owned(),
            Some(&settings),
            (4, "fourth"),
        ));
        assert!(calls.is_parked(1) && calls.is_parked(2));
        assert!(
            !calls.is_parked(3),
            "a pending call holds its request, not the table"
        );

        let call = calls.answered(77).unwrap();
        assert_eq!(call.provider(), ProviderIndex::new(0));
        assert!(calls.answered(77).is_none(), "an answer matches once");
        let mut cache = IntrospectionCache::new(CACHE_CAPACITY);
        let finished = Calls::finish(
            call,
            Ok(Introspected::Inactive),
            Some(&settings),
            &mut cache,
            101,
        );
        assert_eq!(finished.outcome, Ok(false));
        assert_eq!(finished.waiters, vec![(1, "first"), (2, "second")]);
        assert_eq!(
            cache.get(ProviderIndex::new(0), "t1", 101),
            Some(&Introspected::Inactive)
        );
        assert!(!calls.is_parked(1));
    }

    #[test]
    fn a_refused_dispatch_gives_the_request_back_and_leaves_no_call() {
        let settings = settings(1_000);
        let mut calls: Calls<&str> = Calls::default();
        let pending = dispatch(calls.park(
            ProviderIndex::new(0),
            "t".to_owned(),
            Some(&settings),
            (1, "request"),
        ));
        assert_eq!(pending.into_request(), "request");
        assert!(!calls.is_parked(1));
        // The next request with that token asks again instead of joining nothing.
        dispatch(calls.park(
            ProviderIndex::new(0),
            "t".to_owned(),
            Some(&settings),
            (2, "again"),
        ));
    }

    #[test]
    fn a_provider_without_introspection_is_refused() {
        let mut calls: Calls<&str> = Calls::default();
        assert!(matches!(
            calls.park(ProviderIndex::new(0), "t".to_owned(), None, (1, "r")),
            Err("r")
        ));
    }

    #[test]
    fn a_late_answer_after_the_deadline_finds_nothing() {
        let settings = settings(2_500); // three seconds, plus one for the tick
        let mut calls = Calls::default();
        let pending = dispatch(calls.park(
            ProviderIndex::new(0),
            "t".to_owned(),
            Some(&settings),
            (1, "r"),
        ));
        calls.started(pending, 5, 100);
        assert!(
            calls.overdue(104).is_empty(),
            "not overdue at the deadline itself"
        );
        let overdue = calls.overdue(105);
        assert_eq!(overdue.len(), 1);
        let mut cache = IntrospectionCache::new(CACHE_CAPACITY);
        let finished = Calls::finish(
            overdue.into_iter().next().unwrap(),
            Err(IntrospectionError::NoAnswer),
            Some(&settings),
            &mut cache,
            105,
        );
        assert_eq!(finished.outcome, Err(IntrospectionError::NoAnswer));
        assert_eq!(finished.waiters, vec![(1, "r")]);
        assert_eq!(
            cache.get(ProviderIndex::new(0), "t", 105),
            None,
            "a failure is not remembered"
        );
        assert!(
            calls.answered(5).is_none(),
            "the late answer matches no call"
        );
    }

    #[test]
    fn a_request_that_went_away_leaves_its_call_to_the_others() {
        let settings = settings(1_000);
        let mut calls = Calls::default();
        let pending = dispatch(calls.park(
            ProviderIndex::new(0),
            "t".to_owned(),
            Some(&settings),
            (1, "gone"),
        ));
        calls.started(pending, 9, 100);
        assert!(matches!(
            calls.park(
                ProviderIndex::new(0),
                "t".to_owned(),
                Some(&settings),
                (2, "stays")
            ),
            Ok(Parked::Joined)
        ));
        calls.forget(1);
        let call = calls.answered(9).unwrap();
        let mut cache = IntrospectionCache::new(CACHE_CAPACITY);
        let finished = Calls::finish(
            call,
            Ok(Introspected::Inactive),
            Some(&settings),
            &mut cache,
            100,
        );
        assert_eq!(finished.waiters, vec![(2, "stays")]);
    }

    #[test]
    fn a_reconfiguration_releases_every_waiting_request() {
        let settings = settings(1_000);
        let mut calls = Calls::default();
        for (id, token) in [(1, "a"), (2, "b")] {
            let pending = dispatch(calls.park(
                ProviderIndex::new(0),
                token.to_owned(),
                Some(&settings),
                (id, token),
            ));
            calls.started(pending, id, 100);
        }
        assert!(matches!(
            calls.park(
                ProviderIndex::new(0),
                "a".to_owned(),
                Some(&settings),
                (3, "a2")
            ),
            Ok(Parked::Joined)
        ));
        let mut released = calls.take_all();
        released.sort_unstable();
        assert_eq!(released, vec![(1, "a"), (2, "b"), (3, "a2")]);
        assert!(calls.answered(1).is_none() && calls.answered(2).is_none());
    }

    #[test]
    fn bounded_in_calls_and_in_waiting_requests() {
        let settings = settings(1_000);
        let mut calls = Calls::default();
        for id in 0..MAX_CALLS {
            let token = format!("t{id}");
            let pending =
                dispatch(calls.park(ProviderIndex::new(0), token, Some(&settings), (0, id)));
            calls.started(pending, u32::try_from(id).unwrap(), 100);
        }
        assert!(matches!(
            calls.park(
                ProviderIndex::new(0),
                "one more".to_owned(),
                Some(&settings),
                (0, usize::MAX)
            ),
            Err(usize::MAX)
        ));
        // Joining needs no new call, until the waiting requests reach their own bound.
        for waiter in MAX_CALLS..MAX_WAITING {
            assert!(matches!(
                calls.park(
                    ProviderIndex::new(0),
                    "t0".to_owned(),
                    Some(&settings),
                    (0, waiter)
                ),
                Ok(Parked::Joined)
            ));
        }
        assert!(matches!(
            calls.park(
                ProviderIndex::new(0),
                "t0".to_owned(),
                Some(&settings),
                (0, usize::MAX)
            ),
            Err(usize::MAX)
        ));
    }
}
