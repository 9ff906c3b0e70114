//! Documents made for people to read: an invoice as CSV, printable HTML and email.
//! The HTTP layer and the command line both serve them.

pub mod invoice;
