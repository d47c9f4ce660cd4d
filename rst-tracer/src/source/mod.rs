//! Where events come from. `live` reads the ring buffers of the attached program; replay of a
//! capture file (a later addition) runs the same program over recorded frames.

pub mod live;
