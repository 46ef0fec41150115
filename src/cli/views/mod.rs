//! What the commands print, apart from how they get it: pure functions from library values to
//! text (or JSON values).

pub mod audit;
pub mod run;
pub mod status;
