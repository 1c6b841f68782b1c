//! In-process session tests: a real router on loopback, a fake guest whose
//! display feeds a real encoder hub.
