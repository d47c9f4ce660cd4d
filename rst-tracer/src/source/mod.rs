//! Where events come from. `live` reads the ring buffers of the attached program; `prog_run`
//! runs the same loaded program over frames with BPF_PROG_TEST_RUN (tests, benchmarks, and
//! capture replay).

pub mod capture;
pub mod link;
pub mod live;
pub mod prog_run;
pub mod replay;
