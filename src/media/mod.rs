//! Media plane helpers for paging and the simulated phone.
//!
//! - [`g711`]: G.711 mu-law and A-law companding
//! - [`rtp`]: RTP packets (RFC 3550), a numbering sender and receiver statistics
//!   (loss, reordering, jitter, DSCP)
//! - [`tone`]: tone generation, the paging cues and Goertzel tone detection
//! - [`wav`]: WAV reading and writing, resampling to 8 kHz and G.711 framing

pub mod g711;
pub mod rtp;
pub mod tone;
pub mod wav;
