//! Background work that runs beside the HTTP server in every instance.

pub mod decision_log;
