//! Test-only fault hooks, compiled in with the `fault-injection` feature (the tests turn it
//! on; release builds do not have it): make the worker that takes a given delivery panic,
//! to prove a panic loses nothing and takes no worker down.

#[cfg(feature = "fault-injection")]
static PANIC_ON: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The worker that takes the delivery with this id will panic.
#[cfg(feature = "fault-injection")]
pub fn panic_on_delivery(id: &str) {
    PANIC_ON.lock().expect("fault lock").push(id.to_string());
}

/// Panics if a fault was asked for this delivery.
pub(crate) fn check(_delivery_id: &str) {
    #[cfg(feature = "fault-injection")]
    if PANIC_ON
        .lock()
        .expect("fault lock")
        .iter()
        .any(|id| id == _delivery_id)
    {
        panic!("fault injected for delivery {_delivery_id}");
    }
}
