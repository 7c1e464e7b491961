//! The policies the simulator scores: the App's engine, PyTorch's Lambda, any program.

pub mod engine;
pub mod external;
pub mod judge;
pub mod lambda;

pub use engine::Engine;
pub use external::External;
pub use lambda::Lambda;
