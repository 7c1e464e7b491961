//! Intake: what comes in from GitHub and how it is kept. Verify the signature over the raw
//! body, parse into our own narrow event types (GitHub's JSON stops here), write the
//! delivery to the delivery log, hand it to a queue, answer. Nothing here decides or acts;
//! the queue is an interface, so intake depends on nothing above it.

pub mod delivery_log;
pub mod events;
pub mod recent_ids;
pub mod signature;
pub mod states;
pub mod webhook;

pub use events::Event;

use chrono::{DateTime, Utc};
use std::time::Duration;

/// One verified, parsed delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub event_name: String,
    pub event: Event,
    pub received_at: DateTime<Utc>,
    pub body_bytes: u32,
    /// Its place in the delivery log, to acknowledge once handled (None: not logged).
    pub seq: Option<u64>,
    /// Handed back by the delivery log at start-up: whatever it dispatches may already
    /// have been sent before the crash, so runs are looked up before any POST.
    pub replayed: bool,
}

impl Delivery {
    /// A delivery the App makes itself (the reconciler's view of the API, a replay).
    pub fn synthetic(id: String, event_name: &str, event: Event) -> Delivery {
        Delivery {
            id,
            event_name: event_name.to_string(),
            event,
            received_at: Utc::now(),
            body_bytes: 0,
            seq: None,
            replayed: false,
        }
    }
}

/// Why a delivery could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum EnqueueError {
    /// The queue stayed full for the whole wait: answer 503 with `Retry-After`.
    Full,
    /// Shutting down.
    Closed,
}

/// A reserved place in the queue: the delivery is logged only once it has one.
pub trait QueueSlot: Send {
    fn send(self: Box<Self>, d: Delivery);
}

/// Where intake hands deliveries (the pipeline).
#[async_trait::async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// A place for this event's delivery, waiting up to `wait` for one.
    async fn reserve(
        &self,
        event: &Event,
        wait: Duration,
    ) -> Result<Box<dyn QueueSlot>, EnqueueError>;
}
