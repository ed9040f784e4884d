//! What the stand-in remembers, in memory and bounded: the first attempts of the retry test values,
//! the transactions, which users have sessions, and which status changes have been announced to the
//! WebSocket connections and the webhook.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

/// How many first attempts of the retry test values are remembered.
pub(super) const MAX_FIRST_ATTEMPTS: usize = 10_000;
/// How many transactions are kept; the oldest is evicted first.
pub(super) const MAX_TRANSACTIONS: usize = 100_000;
/// How many users with a session are remembered for the KYC status.
pub(super) const MAX_USERS: usize = 100_000;

/// Locks a mutex, carrying on with the data if another thread panicked while holding it.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A set of strings that forgets its oldest entry when full.
#[derive(Debug)]
pub(super) struct BoundedSet {
    capacity: usize,
    members: HashSet<String>,
    order: VecDeque<String>,
}

impl BoundedSet {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            members: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Adds `key`; true when it was not already there.
    pub(super) fn insert(&mut self, key: String) -> bool {
        if self.members.contains(&key) {
            return false;
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.members.remove(&oldest);
                }
                None => break,
            }
        }
        self.members.insert(key.clone());
        self.order.push_back(key);
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.members.len()
    }
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Terminal {
    Completed,
    Failed,
    Cancelled,
}

/// A transaction's status at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Pending,
    Processing,
    Ended(Terminal),
}

impl Status {
    /// Where the status comes in a transaction's life: 0 pending, 1 processing, 2 terminal.
    pub(super) fn rank(self) -> usize {
        match self {
            Self::Pending => 0,
            Self::Processing => 1,
            Self::Ended(_) => 2,
        }
    }

    pub(super) fn is_terminal(self) -> bool {
        matches!(self, Self::Ended(_))
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Ended(Terminal::Completed) => "completed",
            Self::Ended(Terminal::Failed) => "failed",
            Self::Ended(Terminal::Cancelled) => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Transaction {
    pub(super) id: String,
    pub(super) partner_user_id: String,
    pub(super) checkout_type: String,
    pub(super) currency: String,
    pub(super) network: String,
    pub(super) amount: String,
    pub(super) created: Instant,
    pub(super) created_at: SystemTime,
    pub(super) terminal: Terminal,
}

impl Transaction {
    /// Every status the transaction goes through, in order; `Status::rank` indexes it.
    pub(super) fn statuses(&self) -> [Status; 3] {
        [
            Status::Pending,
            Status::Processing,
            Status::Ended(self.terminal),
        ]
    }

    /// The status at `now`: `pending` for the first `step`, `processing` for the next, then the
    /// terminal status.
    pub(super) fn status_at(&self, now: Instant, step: Duration) -> Status {
        let elapsed = now.saturating_duration_since(self.created);
        if elapsed < step {
            Status::Pending
        } else if elapsed < step.saturating_mul(2) {
            Status::Processing
        } else {
            Status::Ended(self.terminal)
        }
    }

    /// The wall-clock time the transaction enters `status`.
    pub(super) fn entered_at(&self, status: Status, step: Duration) -> SystemTime {
        let after = step.saturating_mul(status.rank() as u32);
        self.created_at
            .checked_add(after)
            .unwrap_or(self.created_at)
    }

    /// The moment, on the stand-in's clock, the transaction leaves `status`; none once terminal.
    fn leaves(&self, status: Status, step: Duration) -> Option<Instant> {
        if status.is_terminal() {
            return None;
        }
        self.created
            .checked_add(step.saturating_mul(status.rank() as u32 + 1))
    }
}

/// Receives, in order, each status a watched transaction enters after the watch began.
pub(super) type Updates = mpsc::UnboundedReceiver<Status>;

/// What a WebSocket connection starts from: the transaction, its status now, and its changes.
pub(super) struct Watch {
    pub(super) transaction: Transaction,
    pub(super) status: Status,
    /// Identifies the watch for [`Ledger::unwatch`].
    pub(super) watcher: u64,
    /// Can repeat statuses up to `status` (the announcer may be a tick behind the clock); a
    /// watcher skips those.
    pub(super) updates: Updates,
}

/// A transaction and what has been announced of it.
#[derive(Debug)]
struct Entry {
    transaction: Transaction,
    /// Whether the announcer follows this transaction: from the start when there is a webhook to
    /// send, otherwise from its first watcher, so that without either it costs nothing.
    scheduled: bool,
    /// The last status handed to the watchers and the webhook.
    announced: Status,
    watchers: Vec<(u64, mpsc::UnboundedSender<Status>)>,
}

/// A user's identity-verification state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KycStatus {
    NotStarted,
    Pending,
    Verified,
    Failed,
}

impl KycStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "not_started",
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Failed => "failed",
        }
    }
}

/// User ids with this prefix always have a failed identity verification.
pub(super) const KYC_FAILED_PREFIX: &str = "kyc-failed";

#[derive(Debug, Default, Clone, Copy)]
struct UserRecord {
    /// When the earliest of the user's transactions that end `completed` completes.
    first_completion: Option<Instant>,
}

/// The transactions and the users who created them.
#[derive(Debug)]
pub(super) struct Ledger {
    transaction_capacity: usize,
    user_capacity: usize,
    transactions: HashMap<String, Entry>,
    transaction_order: VecDeque<String>,
    users: HashMap<String, UserRecord>,
    user_order: VecDeque<String>,
    /// When each scheduled transaction next changes status, earliest first. An evicted
    /// transaction's entry stays until it is due and is then skipped.
    due: BinaryHeap<Reverse<(Instant, String)>>,
    next_watcher: u64,
}

impl Ledger {
    pub(super) fn new(transaction_capacity: usize, user_capacity: usize) -> Self {
        Self {
            transaction_capacity: transaction_capacity.max(1),
            user_capacity: user_capacity.max(1),
            transactions: HashMap::new(),
            transaction_order: VecDeque::new(),
            users: HashMap::new(),
            user_order: VecDeque::new(),
            due: BinaryHeap::new(),
            next_watcher: 0,
        }
    }

    /// Records a new transaction (evicting the oldest when full) and marks its user as having a
    /// session. `announce` schedules its status changes for the announcer from the start.
    pub(super) fn record(&mut self, transaction: Transaction, step: Duration, announce: bool) {
        let completes = match transaction.terminal {
            Terminal::Completed => transaction.leaves(Status::Processing, step),
            Terminal::Failed | Terminal::Cancelled => None,
        };
        if !self.users.contains_key(&transaction.partner_user_id) {
            while self.user_order.len() >= self.user_capacity {
                match self.user_order.pop_front() {
                    Some(oldest) => {
                        self.users.remove(&oldest);
                    }
                    None => break,
                }
            }
            self.user_order
                .push_back(transaction.partner_user_id.clone());
        }
        let user = self
            .users
            .entry(transaction.partner_user_id.clone())
            .or_default();
        user.first_completion = match (user.first_completion, completes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };

        while self.transaction_order.len() >= self.transaction_capacity {
            match self.transaction_order.pop_front() {
                Some(oldest) => {
                    self.transactions.remove(&oldest);
                }
                None => break,
            }
        }
        self.transaction_order.push_back(transaction.id.clone());
        if announce && let Some(at) = transaction.leaves(Status::Pending, step) {
            self.due.push(Reverse((at, transaction.id.clone())));
        }
        self.transactions.insert(
            transaction.id.clone(),
            Entry {
                transaction,
                scheduled: announce,
                announced: Status::Pending,
                watchers: Vec::new(),
            },
        );
    }

    pub(super) fn transaction(&self, id: &str) -> Option<&Transaction> {
        self.transactions.get(id).map(|entry| &entry.transaction)
    }

    /// Starts watching a transaction: its status at `now`, and from then on each status it enters.
    /// `None` when the transaction is unknown.
    pub(super) fn watch(&mut self, id: &str, now: Instant, step: Duration) -> Option<Watch> {
        let entry = self.transactions.get_mut(id)?;
        let status = entry.transaction.status_at(now, step);
        let (sender, updates) = mpsc::unbounded_channel();
        let watcher = self.next_watcher;
        self.next_watcher = self.next_watcher.wrapping_add(1);
        if !status.is_terminal() {
            if !entry.scheduled {
                // Nobody has been told anything of this transaction yet, so announcing starts
                // from where it is now.
                entry.scheduled = true;
                entry.announced = status;
                if let Some(at) = entry.transaction.leaves(status, step) {
                    self.due.push(Reverse((at, id.to_owned())));
                }
            }
            entry.watchers.push((watcher, sender));
        }
        Some(Watch {
            transaction: entry.transaction.clone(),
            status,
            watcher,
            updates,
        })
    }

    /// Stops a watch; nothing happens when it already ended.
    pub(super) fn unwatch(&mut self, id: &str, watcher: u64) {
        if let Some(entry) = self.transactions.get_mut(id) {
            entry.watchers.retain(|(each, _)| *each != watcher);
        }
    }

    /// Announces every status change due by `now`: each status a transaction entered since the
    /// last announcement, in order and once, goes to its watchers and to `on_change`.
    pub(super) fn announce_due(
        &mut self,
        now: Instant,
        step: Duration,
        mut on_change: impl FnMut(&Transaction, &[Status]),
    ) {
        // Rescheduled after the loop, so that no transaction can come round twice in one call.
        let mut rescheduled = Vec::new();
        while let Some(Reverse((at, _))) = self.due.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id))) = self.due.pop() else {
                break;
            };
            let Some(entry) = self.transactions.get_mut(&id) else {
                continue;
            };
            let status = entry.transaction.status_at(now, step);
            let statuses = entry.transaction.statuses();
            let entered = statuses
                .get(entry.announced.rank() + 1..=status.rank())
                .unwrap_or_default();
            if !entered.is_empty() {
                // A watcher whose connection has gone is dropped here.
                entry
                    .watchers
                    .retain(|(_, sender)| entered.iter().all(|each| sender.send(*each).is_ok()));
                on_change(&entry.transaction, entered);
                entry.announced = status;
            }
            match entry.transaction.leaves(entry.announced, step) {
                Some(next) => rescheduled.push(Reverse((next, id))),
                // Dropping the senders tells each watcher there is nothing more to come.
                None => entry.watchers.clear(),
            }
        }
        self.due.extend(rescheduled);
    }

    pub(super) fn kyc_status(&self, partner_user_id: &str, now: Instant) -> KycStatus {
        if partner_user_id.starts_with(KYC_FAILED_PREFIX) {
            return KycStatus::Failed;
        }
        match self.users.get(partner_user_id) {
            None => KycStatus::NotStarted,
            Some(user) if user.first_completion.is_some_and(|at| now >= at) => KycStatus::Verified,
            Some(_) => KycStatus::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transaction(id: &str, user: &str, terminal: Terminal, created: Instant) -> Transaction {
        Transaction {
            id: id.into(),
            partner_user_id: user.into(),
            checkout_type: "buy".into(),
            currency: "USDT".into(),
            network: "TRC20".into(),
            amount: "100".into(),
            created,
            created_at: SystemTime::UNIX_EPOCH,
            terminal,
        }
    }

    #[test]
    fn the_first_attempt_set_forgets_its_oldest_key_when_full() {
        let mut set = BoundedSet::new(MAX_FIRST_ATTEMPTS);
        for i in 0..=MAX_FIRST_ATTEMPTS {
            assert!(set.insert(format!("key-{i}")));
        }
        assert_eq!(set.len(), MAX_FIRST_ATTEMPTS);
        assert!(!set.insert(format!("key-{MAX_FIRST_ATTEMPTS}")));
        assert!(set.insert("key-0".into()), "the oldest key was dropped");
    }

    #[test]
    fn the_ledger_evicts_the_oldest_transaction_when_full() {
        let mut ledger = Ledger::new(2, 2);
        let now = Instant::now();
        let step = Duration::from_secs(1);
        ledger.record(
            transaction("a", "u1", Terminal::Completed, now),
            step,
            false,
        );
        ledger.record(
            transaction("b", "u2", Terminal::Completed, now),
            step,
            false,
        );
        ledger.record(
            transaction("c", "u3", Terminal::Completed, now),
            step,
            false,
        );
        assert!(ledger.transaction("a").is_none());
        assert!(ledger.transaction("b").is_some());
        assert!(ledger.transaction("c").is_some());
        assert_eq!(ledger.kyc_status("u1", now), KycStatus::NotStarted);
        assert_eq!(ledger.kyc_status("u3", now), KycStatus::Pending);
    }

    #[test]
    fn a_transaction_moves_through_pending_and_processing_to_its_end() {
        let created = Instant::now();
        let step = Duration::from_secs(2);
        let tx = transaction("a", "u", Terminal::Cancelled, created);
        let epoch = SystemTime::UNIX_EPOCH;
        let at = |elapsed: u64| {
            let status = tx.status_at(created + Duration::from_secs(elapsed), step);
            (status, tx.entered_at(status, step))
        };
        assert_eq!(at(0), (Status::Pending, epoch));
        assert_eq!(at(3), (Status::Processing, epoch + step));
        assert_eq!(
            at(4),
            (Status::Ended(Terminal::Cancelled), epoch + step * 2)
        );
    }

    /// Announces what is due at `now`: each transaction's id with the statuses it entered.
    fn announce(ledger: &mut Ledger, now: Instant, step: Duration) -> Vec<(String, Vec<Status>)> {
        let mut changes = Vec::new();
        ledger.announce_due(now, step, |transaction, entered| {
            changes.push((transaction.id.clone(), entered.to_vec()));
        });
        changes
    }

    fn changed(id: &str, statuses: &[Status]) -> (String, Vec<Status>) {
        (id.to_owned(), statuses.to_vec())
    }

    #[test]
    fn each_status_change_is_announced_once_and_in_order_even_when_the_clock_jumps() {
        let mut ledger = Ledger::new(10, 10);
        let created = Instant::now();
        let step = Duration::from_secs(1);
        ledger.record(
            transaction("a", "u", Terminal::Completed, created),
            step,
            true,
        );
        ledger.record(transaction("b", "u", Terminal::Failed, created), step, true);
        assert!(announce(&mut ledger, created, step).is_empty());
        assert_eq!(
            announce(&mut ledger, created + step, step),
            [
                changed("a", &[Status::Processing]),
                changed("b", &[Status::Processing])
            ]
        );
        assert!(announce(&mut ledger, created + step, step).is_empty());
        assert_eq!(
            announce(&mut ledger, created + step * 10, step),
            [
                changed("a", &[Status::Ended(Terminal::Completed)]),
                changed("b", &[Status::Ended(Terminal::Failed)])
            ]
        );
        assert!(announce(&mut ledger, created + step * 20, step).is_empty());
        assert!(
            ledger.due.is_empty(),
            "a terminal transaction is not followed"
        );

        ledger.record(
            transaction("c", "u", Terminal::Cancelled, created),
            step,
            true,
        );
        assert_eq!(
            announce(&mut ledger, created + step * 5, step),
            [changed(
                "c",
                &[Status::Processing, Status::Ended(Terminal::Cancelled)]
            )]
        );
    }

    #[test]
    fn a_transaction_without_a_webhook_is_followed_only_from_its_first_watch() {
        let mut ledger = Ledger::new(10, 10);
        let created = Instant::now();
        let step = Duration::from_secs(1);
        ledger.record(
            transaction("a", "u", Terminal::Completed, created),
            step,
            false,
        );
        assert!(ledger.due.is_empty());
        assert!(announce(&mut ledger, created + step, step).is_empty());

        let mut watch = ledger.watch("a", created + step, step).expect("known");
        assert_eq!(watch.status, Status::Processing);
        assert_eq!(watch.transaction.id, "a");
        assert!(
            announce(&mut ledger, created + step, step).is_empty(),
            "processing was already the watch's starting point"
        );
        assert_eq!(
            announce(&mut ledger, created + step * 2, step),
            [changed("a", &[Status::Ended(Terminal::Completed)])]
        );
        assert_eq!(
            watch.updates.try_recv(),
            Ok(Status::Ended(Terminal::Completed))
        );
        assert_eq!(
            watch.updates.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
    }

    #[test]
    fn a_watcher_hears_each_later_status_until_it_unwatches() {
        let mut ledger = Ledger::new(10, 10);
        let created = Instant::now();
        let step = Duration::from_secs(1);
        ledger.record(
            transaction("a", "u", Terminal::Completed, created),
            step,
            true,
        );
        assert!(ledger.watch("unknown", created, step).is_none());
        let mut staying = ledger.watch("a", created, step).expect("known");
        let mut leaving = ledger.watch("a", created, step).expect("known");
        assert_eq!(staying.status, Status::Pending);
        assert_ne!(staying.watcher, leaving.watcher);
        ledger.unwatch("a", leaving.watcher);
        assert_eq!(
            leaving.updates.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );

        announce(&mut ledger, created + step * 2, step);
        assert_eq!(staying.updates.try_recv(), Ok(Status::Processing));
        assert_eq!(
            staying.updates.try_recv(),
            Ok(Status::Ended(Terminal::Completed))
        );
        assert_eq!(
            staying.updates.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );

        let mut late = ledger.watch("a", created + step * 2, step).expect("known");
        assert_eq!(late.status, Status::Ended(Terminal::Completed));
        assert_eq!(
            late.updates.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
    }

    #[test]
    fn the_watchers_of_an_evicted_transaction_hear_that_nothing_more_comes() {
        let mut ledger = Ledger::new(1, 10);
        let created = Instant::now();
        let step = Duration::from_secs(1);
        ledger.record(
            transaction("a", "u", Terminal::Completed, created),
            step,
            true,
        );
        let mut watch = ledger.watch("a", created, step).expect("known");
        ledger.record(
            transaction("b", "u", Terminal::Completed, created),
            step,
            true,
        );
        assert_eq!(
            watch.updates.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
        assert_eq!(
            announce(&mut ledger, created + step, step),
            [changed("b", &[Status::Processing])]
        );
    }

    #[test]
    fn a_user_is_verified_once_a_completing_transaction_completes() {
        let mut ledger = Ledger::new(10, 10);
        let created = Instant::now();
        let step = Duration::from_secs(1);
        ledger.record(
            transaction("a", "u", Terminal::Failed, created),
            step,
            false,
        );
        assert_eq!(
            ledger.kyc_status("u", created + step * 5),
            KycStatus::Pending
        );
        ledger.record(
            transaction("b", "u", Terminal::Completed, created),
            step,
            false,
        );
        assert_eq!(ledger.kyc_status("u", created + step), KycStatus::Pending);
        assert_eq!(
            ledger.kyc_status("u", created + step * 2),
            KycStatus::Verified
        );
        assert_eq!(
            ledger.kyc_status("kyc-failed-1", created),
            KycStatus::Failed
        );
    }
}
