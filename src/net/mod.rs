//! Socket helpers shared by the server and the load tester that the
//! standard library and tokio do not offer.

pub mod mmsg;
