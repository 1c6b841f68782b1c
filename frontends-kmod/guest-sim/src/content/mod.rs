//! What the simulated guest shows and plays: pictures and tones that tests can recognise
//! after they went through the gateway, an encoder, a network and a browser.
//!
//! Pure code, no I/O. Everything is deterministic given its inputs, so a test can re-render
//! the exact frame or samples the guest produced and compare.
//!
//! - [`strip`]: frame number + timestamp as big blocks at the top of every frame.
//! - [`scene`]: the pictures (test pattern, desktop, noise) with strip and input overlay.
//! - [`input`] / [`overlay`]: input state from events, drawn as cursor, touches, text line;
//!   and the readers that find them again in a picture.
//! - [`pixfmt`]: the internal XRGB8888 frame as bytes of every DRM format xen-drm-front offers.
//! - [`tone`] / [`pcm`]: sine tones per channel, every linear/companded sndif PCM format, and
//!   a tone analyser.
//!
//! Layout for test writers ([`grid`]): the strip covers the top 3/22 of the picture and the
//! text line the bottom 1/22; both are drawn over everything else, so aim pointer and touch
//! tests at [`grid::content_area`]. Readers ([`decode_strip`], [`find_cursor`],
//! [`read_text_line`], [`read_buttons`]) take an [`ImageView`] of any size and pixel layout
//! (crop letterboxing away first with [`ImageView::crop`]).

pub mod font;
pub mod frame;
pub mod g711;
pub mod grid;
pub mod input;
pub mod keymap;
pub mod overlay;
pub mod pcm;
pub mod pixfmt;
pub mod scene;
pub mod strip;
pub mod ticks;
pub mod tone;
pub mod view;

#[cfg(test)]
mod degrade;

pub use frame::{Frame, Rect};
pub use input::{events_for_text, Buttons, InputEvent, InputState};
pub use overlay::{draw_overlay, find_cursor, read_buttons, read_text_line};
pub use pcm::PcmFormat;
pub use pixfmt::PixelFormat;
pub use scene::{render, Renderer, Scene};
pub use strip::{decode_strip, draw_strip, StripData};
pub use tone::{measure_tone, measure_tone_in, ToneGenerator, ToneMeasurement};
pub use view::{psnr, ImageView, PixelLayout};
