//! Requests parked until their provider's keys (or an address list) arrive: a bounded list
//! the adapter keeps per worker. Bounded, because during an identity-provider outage every request would otherwise
//! park and hold its headers; past the capacity a request is decided at once (`503`).

use crate::base::time::UnixSeconds;

/// At most this many requests wait per worker by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A parked request, with what it waits for. `R` is the request as the adapter keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter<R> {
    /// The host's id of the request's stream.
    pub context_id: u32,
    /// What it waits for, as the adapter numbers its remote sources.
    pub source: usize,
    /// The source's document version and attempt generation when the request parked: a change of
    /// either means new keys or an ended attempt, and wakes it.
    pub version: u64,
    pub generation: u64,
    /// Woken by then whatever happens.
    pub deadline: UnixSeconds,
    pub request: R,
}

/// The parked requests of one worker.
#[derive(Debug, Clone)]
pub struct WaitList<R> {
    waiters: Vec<Waiter<R>>,
    capacity: usize,
}

impl<R> WaitList<R> {
    pub fn new(capacity: usize) -> WaitList<R> {
        WaitList {
            waiters: Vec::new(),
            capacity,
        }
    }

    /// Parks `waiter`, or gives it back when the list is full.
    pub fn park(&mut self, waiter: Waiter<R>) -> Result<(), Waiter<R>> {
        if self.waiters.len() >= self.capacity {
            return Err(waiter);
        }
        self.waiters.push(waiter);
        Ok(())
    }

    pub fn is_parked(&self, context_id: u32) -> bool {
        self.waiters
            .iter()
            .any(|waiter| waiter.context_id == context_id)
    }

    /// The request went away while parked.
    pub fn forget(&mut self, context_id: u32) {
        self.waiters
            .retain(|waiter| waiter.context_id != context_id);
    }

    /// Takes out the waiters whose wait is over (`ready`) or whose deadline passed.
    pub fn take_ready(
        &mut self,
        now: UnixSeconds,
        ready: impl Fn(&Waiter<R>) -> bool,
    ) -> Vec<Waiter<R>> {
        let (done, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|waiter| now > waiter.deadline || ready(waiter));
        self.waiters = still;
        done
    }

    /// Takes out every waiter (the configuration is being replaced).
    pub fn take_all(&mut self) -> Vec<Waiter<R>> {
        std::mem::take(&mut self.waiters)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn waiter(context_id: u32, deadline: UnixSeconds) -> Waiter<()> {
        Waiter {
            context_id,
            source: 0,
            version: 1,
            generation: 1,
            deadline,
            request: (),
        }
    }

    #[test]
    fn a_full_list_gives_the_request_back_to_be_decided_at_once() {
        let mut list = WaitList::new(2);
        assert!(list.park(waiter(1, 10)).is_ok());
        assert!(list.park(waiter(2, 10)).is_ok());
        assert_eq!(list.park(waiter(3, 10)), Err(waiter(3, 10)));
        assert!(list.is_parked(1) && list.is_parked(2));
        list.forget(1);
        assert!(!list.is_parked(1) && list.is_parked(2));
        assert!(list.park(waiter(3, 10)).is_ok());
    }

    #[test]
    fn waiters_leave_when_ready_or_past_their_deadline() {
        let mut list = WaitList::new(DEFAULT_CAPACITY);
        for (context_id, deadline) in [(1, 10), (2, 20), (3, 30)] {
            list.park(waiter(context_id, deadline)).unwrap();
        }
        let woken = list.take_ready(15, |waiter| waiter.context_id == 3);
        let ids: Vec<u32> = woken.iter().map(|waiter| waiter.context_id).collect();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(list.take_ready(15, |_| false), vec![]);
        assert_eq!(list.take_all().len(), 1);
        assert_eq!(list.take_all(), vec![]);
    }
}
