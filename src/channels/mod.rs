//! Channel names and the templates that make them: what a connection is subscribed to
//! and what a publisher targets. Pure text rules, no I/O.

mod name;
mod path;
mod template;

pub use name::{MAX_CHANNEL_LEN, check_channel};
pub use path::{Params, PathPattern};
pub use template::{Source, Template};
