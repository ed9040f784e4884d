//! What the stand-in remembers, in memory and bounded: the first attempts of the retry test values,
//! the transactions, and which users have sessions.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

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
    /// The status at `now` and the wall-clock time it was entered: `pending` for the first `step`,
    /// `processing` for the next, then the terminal status.
    pub(super) fn status_at(&self, now: Instant, step: Duration) -> (Status, SystemTime) {
        let elapsed = now.saturating_duration_since(self.created);
        let shifted = |by: Duration| self.created_at.checked_add(by).unwrap_or(self.created_at);
        if elapsed < step {
            (Status::Pending, self.created_at)
        } else if elapsed < step.saturating_mul(2) {
            (Status::Processing, shifted(step))
        } else {
            (
                Status::Ended(self.terminal),
                shifted(step.saturating_mul(2)),
            )
        }
    }
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
    transactions: HashMap<String, Transaction>,
    transaction_order: VecDeque<String>,
    users: HashMap<String, UserRecord>,
    user_order: VecDeque<String>,
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
        }
    }

    /// Records a new transaction (evicting the oldest when full) and marks its user as having a
    /// session.
    pub(super) fn record(&mut self, transaction: Transaction, step: Duration) {
        let completes = match transaction.terminal {
            Terminal::Completed => transaction.created.checked_add(step.saturating_mul(2)),
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
        self.transactions
            .insert(transaction.id.clone(), transaction);
    }

    pub(super) fn transaction(&self, id: &str) -> Option<&Transaction> {
        self.transactions.get(id)
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
        ledger.record(transaction("a", "u1", Terminal::Completed, now), step);
        ledger.record(transaction("b", "u2", Terminal::Completed, now), step);
        ledger.record(transaction("c", "u3", Terminal::Completed, now), step);
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
        assert_eq!(tx.status_at(created, step), (Status::Pending, epoch));
        assert_eq!(
            tx.status_at(created + Duration::from_secs(3), step),
            (Status::Processing, epoch + step)
        );
        assert_eq!(
            tx.status_at(created + Duration::from_secs(4), step),
            (Status::Ended(Terminal::Cancelled), epoch + step * 2)
        );
    }

    #[test]
    fn a_user_is_verified_once_a_completing_transaction_completes() {
        let mut ledger = Ledger::new(10, 10);
        let created = Instant::now();
        let step = Duration::from_secs(1);
        ledger.record(transaction("a", "u", Terminal::Failed, created), step);
        assert_eq!(
            ledger.kyc_status("u", created + step * 5),
            KycStatus::Pending
        );
        ledger.record(transaction("b", "u", Terminal::Completed, created), step);
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
