//! Input state made visible, and found again in a picture.
//!
//! - Cursor: a magenta crosshair with a black outline, centred exactly on the pointer.
//!   Magenta (R and B high, G low) appears nowhere in the scenes' own drawing, and a
//!   crosshair's arms give the position on each axis independently, so the reader stays
//!   exact when the cursor is clipped at an edge and within a pixel or two after blur.
//! - Touch contacts: a filled disc per contact, colour and digit from the contact id.
//! - Text line: the bottom grid row, white glyphs on black, the tail of the typed text,
//!   then three boxes for the left, middle and right mouse buttons (white = pressed).
//!
//! Geometry is relative to the picture size (like the strip), so the readers work on
//! scaled pictures. Drawing order, lowest first: touches, cursor, text line; the strip is
//! drawn last by the scene, so the cursor is hidden while it is over the strip or the text line.

use super::font::{draw_glyph, read_glyph};
use super::frame::{rgb, Frame, Rect};
use super::grid::{cell, strip_bottom, text_top, COLS, TEXT_ROW};
use super::input::{Buttons, InputState};
use super::view::ImageView;

/// Characters the text line shows (its grid cells); the rest of the row is the button boxes.
pub const TEXT_COLS: u32 = COLS - 4;
pub const CURSOR_COLOUR: u32 = rgb(255, 0, 255);
const OUTLINE: u32 = rgb(0, 0, 0);
const TEXT_FG: u32 = rgb(255, 255, 255);
const TEXT_BG: u32 = rgb(0, 0, 0);
const BUTTON_OFF: u32 = rgb(64, 64, 64);
/// Touch marker colours by `id mod len`: saturated but never magenta-like.
const TOUCH_COLOURS: [u32; 6] = [
    rgb(0, 200, 255),
    rgb(255, 220, 0),
    rgb(0, 200, 0),
    rgb(255, 128, 0),
    rgb(230, 230, 230),
    rgb(230, 0, 0),
];

/// Crosshair geometry for a picture `height` pixels tall: (arm half-length, arm thickness
/// (odd, centred on the hotspot), outline width).
pub fn cursor_geometry(height: u32) -> (i64, i64, i64) {
    let h = i64::from(height);
    ((h / 36).max(6), 2 * (h / 360).max(1) + 1, (h / 540).max(1))
}

fn draw_cursor(frame: &mut Frame, x: i64, y: i64) {
    let (arm, thick, outline) = cursor_geometry(frame.height);
    let half = thick / 2;
    let bars = [
        Rect {
            x0: x - arm,
            y0: y - half,
            x1: x + arm + 1,
            y1: y + half + 1,
        },
        Rect {
            x0: x - half,
            y0: y - arm,
            x1: x + half + 1,
            y1: y + arm + 1,
        },
    ];
    for b in bars {
        let o = Rect {
            x0: b.x0 - outline,
            y0: b.y0 - outline,
            x1: b.x1 + outline,
            y1: b.y1 + outline,
        };
        frame.fill(o, OUTLINE);
    }
    for b in bars {
        frame.fill(b, CURSOR_COLOUR);
    }
}

fn draw_touch(frame: &mut Frame, id: i32, x: i64, y: i64) {
    let r = (i64::from(frame.height) / 30).max(5);
    let colour = TOUCH_COLOURS[id.rem_euclid(TOUCH_COLOURS.len() as i32) as usize];
    for dy in -r..=r {
        // Integer disc: the widest dx with dx² + dy² ≤ r².
        let dx = ((r * r - dy * dy) as f64).sqrt() as i64;
        frame.fill_rect(x - dx, y + dy, x + dx + 1, y + dy + 1, colour);
    }
    let digit = char::from_digit(id.rem_euclid(10) as u32, 10).unwrap_or('?');
    let g = r * 5 / 4;
    let c = Rect {
        x0: x - g / 2,
        y0: y - g / 2,
        x1: x - g / 2 + g,
        y1: y - g / 2 + g,
    };
    draw_glyph(frame, c, digit, OUTLINE, colour);
}

fn button_cells(width: u32, height: u32) -> [Rect; 3] {
    [COLS - 3, COLS - 2, COLS - 1].map(|c| cell(width, height, c, TEXT_ROW).inset_frac(1, 6))
}

/// Draws touches, cursor and text line for `state` onto `frame`.
pub fn draw_overlay(frame: &mut Frame, state: &InputState) {
    let (w, h) = (frame.width, frame.height);
    for (&id, &(x, y)) in &state.touches {
        draw_touch(frame, id, x.into(), y.into());
    }
    draw_cursor(frame, state.pointer.0.into(), state.pointer.1.into());

    let row = cell(w, h, 0, TEXT_ROW);
    frame.fill_rect(0, row.y0, i64::from(w), row.y1, TEXT_BG);
    let chars: Vec<char> = state.text.chars().collect();
    let shown = &chars[chars.len().saturating_sub(TEXT_COLS as usize)..];
    for (col, &c) in shown.iter().enumerate() {
        draw_glyph(frame, cell(w, h, col as u32, TEXT_ROW), c, TEXT_FG, TEXT_BG);
    }
    let b = state.buttons;
    for (r, on) in button_cells(w, h)
        .into_iter()
        .zip([b.left, b.middle, b.right])
    {
        frame.fill(r, if on { TEXT_FG } else { BUTTON_OFF });
    }
}

/// Reads the text line: the shown characters with trailing blanks removed. Cells that match
/// no glyph read as `?`. Exact on our own frames; best effort on decoded video.
pub fn read_text_line(view: &ImageView<'_>) -> String {
    let (w, h) = (view.width(), view.height());
    let mut s: String = (0..TEXT_COLS)
        .map(|col| read_glyph(view, cell(w, h, col, TEXT_ROW)).unwrap_or('?'))
        .collect();
    s.truncate(s.trim_end().len());
    s
}

/// Reads the three button boxes of the text line.
pub fn read_buttons(view: &ImageView<'_>) -> Buttons {
    let (w, h) = (view.width(), view.height());
    let [l, m, r] =
        button_cells(w, h).map(|c| view.mean_luma(c.inset_frac(1, 4)).unwrap_or(0) > 160);
    Buttons {
        left: l,
        middle: m,
        right: r,
    }
}

/// How magenta a pixel is: the smaller of red and blue above green.
fn magenta_score(p: [u8; 3]) -> i32 {
    i32::from(p[0].min(p[2])) - i32::from(p[1])
}

/// One line's (row or column) qualifying run: position, weight, run extent.
struct Run {
    at: u32,
    weight: i64,
    from: u32,
    to: u32,
}

/// Lines whose longest magenta run is at least `min_len`, grouped into adjacent bands;
/// returns the heaviest band's weighted centre and the extent its runs cover.
/// `starts`/`ends`: where the cursor can be cut off along this axis (the picture's edges and,
/// for rows, the strip and text line drawn over it): first visible line, one past the last.
fn heaviest_band(
    runs: &[Run],
    starts: &[u32],
    ends: &[u32],
    thick: i64,
) -> Option<(f64, u32, u32)> {
    let mut best: Option<(i64, f64, u32, u32)> = None;
    let mut i = 0;
    while i < runs.len() {
        let mut j = i + 1;
        while j < runs.len() && runs[j].at == runs[j - 1].at + 1 {
            j += 1;
        }
        let band = &runs[i..j];
        let total: i64 = band.iter().map(|r| r.weight).sum();
        let mut centre = band
            .iter()
            .map(|r| r.weight as f64 * f64::from(r.at))
            .sum::<f64>()
            / total.max(1) as f64;
        // An arm cut off (picture edge, strip, text line) is thinner than drawn and its centre
        // is off: place the centre half a thickness in from the arm's visible inner edge.
        let (first, last) = (band[0].at, band[band.len() - 1].at);
        let visible = i64::from(last - first) + 1;
        if visible < thick {
            if starts.contains(&first) {
                centre = (i64::from(last) - thick / 2) as f64;
            } else if ends.contains(&(last + 1)) {
                centre = (i64::from(first) + thick / 2) as f64;
            }
        }
        let from = band.iter().map(|r| r.from).min().unwrap_or(0);
        let to = band.iter().map(|r| r.to).max().unwrap_or(0);
        if best.is_none_or(|b| total > b.0) {
            best = Some((total, centre, from, to));
        }
        i = j;
    }
    best.map(|(_, c, f, t)| (c, f, t))
}

/// Finds the cursor's hotspot in a picture of any size: `None` when there is no crosshair.
///
/// Rows crossed by a long magenta run belong to the horizontal arm; the weighted centre of
/// that band of rows is the hotspot's y. Columns likewise give x. Weighting by how magenta
/// each line is keeps the centre where it was under symmetric blur.
pub fn find_cursor(view: &ImageView<'_>) -> Option<(u32, u32)> {
    let (w, h) = (view.width(), view.height());
    if w == 0 || h == 0 {
        return None;
    }
    let (arm, thick, _) = cursor_geometry(h);
    // Clipping at an edge leaves at least one arm plus the centre; blur eats the ends.
    let min_len = (arm * 3 / 4).max(4) as u32;
    const MASK: i32 = 100;
    let score: Vec<i32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| magenta_score(view.rgb(x, y)))
        .collect();
    let at = |x: u32, y: u32| score[(y * w + x) as usize];

    let scan = |lines: u32, len: u32, get: &dyn Fn(u32, u32) -> i32| -> Vec<Run> {
        let mut out = Vec::new();
        for line in 0..lines {
            let (mut best, mut start, mut run_w) = ((0u32, 0u32, 0i64), 0u32, 0i64);
            for k in 0..=len {
                let s = if k < len { get(line, k) } else { 0 };
                if s >= MASK {
                    if run_w == 0 {
                        start = k;
                    }
                    run_w += i64::from(s);
                } else {
                    if run_w > 0 && k - start > best.1 - best.0 {
                        best = (start, k, run_w);
                    }
                    run_w = 0;
                }
            }
            if best.1 - best.0 >= min_len {
                out.push(Run {
                    at: line,
                    weight: best.2,
                    from: best.0,
                    to: best.1,
                });
            }
        }
        out
    };
    let rows = scan(h, w, &|y, x| at(x, y));
    let cols = scan(w, h, &|x, y| at(x, y));
    let (cy, row_from, row_to) = heaviest_band(
        &rows,
        &[0, strip_bottom(h) as u32],
        &[text_top(h) as u32, h],
        thick,
    )?;
    let (cx, col_from, col_to) = heaviest_band(&cols, &[0], &[w], thick)?;
    // The two arms must cross: each centre inside the other arm's extent.
    if cx < f64::from(row_from)
        || cx >= f64::from(row_to)
        || cy < f64::from(col_from)
        || cy >= f64::from(col_to)
    {
        return None;
    }
    Some((cx.round() as u32, cy.round() as u32))
}

#[cfg(test)]
mod tests {
    use super::super::degrade;
    use super::super::input::{events_for_text, InputEvent};
    use super::super::keymap::{BTN_LEFT, BTN_RIGHT};
    use super::*;

    fn busy(w: u32, h: u32) -> Frame {
        let mut f = Frame::new(w, h);
        for y in 0..h {
            for x in 0..w {
                // No magenta anywhere: blue never exceeds green.
                let (r, g) = ((x * 3) as u8, (y * 5) as u8);
                f.set(x.into(), y.into(), rgb(r, g, r.min(g) / 2));
            }
        }
        f
    }

    fn with_pointer(w: u32, h: u32, x: i32, y: i32) -> Frame {
        // Rendering the background per call dominates debug-build test time; reuse it.
        thread_local! {
            static BUSY: std::cell::RefCell<Option<Frame>> = const { std::cell::RefCell::new(None) };
        }
        let mut f = BUSY.with(|b| {
            let mut b = b.borrow_mut();
            match &*b {
                Some(f) if (f.width, f.height) == (w, h) => f.clone(),
                _ => b.insert(busy(w, h)).clone(),
            }
        });
        let mut s = InputState::new(w, h);
        s.apply(InputEvent::Motion { x, y });
        draw_overlay(&mut f, &s);
        f
    }

    #[test]
    fn cursor_found_exactly_where_drawn() {
        for (w, h) in [(640, 360), (1280, 720), (1920, 1080), (800, 600)] {
            let text_top = super::super::grid::text_top(h) as i32;
            let strip_bottom = super::super::grid::strip_bottom(h) as i32;
            let (right, bottom) = (w as i32 - 1, text_top - 1);
            for (x, y) in [
                (100, 100),
                (w as i32 / 2, h as i32 / 2),
                (0, 150),
                (1, 150),
                (right, 200),
                (right - 1, 201),
                (37, bottom),
                (38, bottom - 1),
                (300, strip_bottom),
                (301, strip_bottom + 1),
            ] {
                let f = with_pointer(w, h, x, y);
                assert_eq!(
                    find_cursor(&f.view()),
                    Some((x as u32, y as u32)),
                    "{w}x{h} at {x},{y}"
                );
            }
        }
    }

    #[test]
    fn cursor_found_after_blur_noise_and_quantisation() {
        for (x, y) in [(200, 150), (333, 222), (5, 100)] {
            let f = with_pointer(640, 360, x, y);
            for damaged in [
                degrade::box_blur(&f, 1),
                degrade::box_blur(&f, 2),
                degrade::jpeg_like(&degrade::add_noise(&degrade::box_blur(&f, 1), 16, 3), 12),
                degrade::jpeg_like(&degrade::chroma_420(&f), 16),
            ] {
                let (fx, fy) = find_cursor(&damaged.view()).expect("cursor");
                assert!(
                    (fx as i32 - x).abs() <= 2 && (fy as i32 - y).abs() <= 2,
                    "{fx},{fy} vs {x},{y}"
                );
            }
        }
    }

    #[test]
    fn cursor_found_after_downscaling() {
        let f = with_pointer(1920, 1080, 960, 600);
        let s = degrade::scale_bilinear(&f, 1280, 720);
        let (x, y) = find_cursor(&s.view()).unwrap();
        assert!(
            (x as i32 - 640).abs() <= 1 && (y as i32 - 400).abs() <= 1,
            "{x},{y}"
        );
    }

    #[test]
    fn no_cursor_no_find() {
        assert_eq!(find_cursor(&busy(640, 360).view()), None);
        assert_eq!(find_cursor(&Frame::new(640, 360).view()), None);
        // A lone magenta line is not a crosshair.
        let mut f = busy(640, 360);
        f.fill_rect(50, 100, 300, 104, CURSOR_COLOUR);
        assert_eq!(find_cursor(&f.view()), None);
    }

    #[test]
    fn text_line_round_trip() {
        for (w, h) in [(640, 360), (1280, 720), (1024, 768)] {
            let mut s = InputState::new(w, h);
            for e in events_for_text("Hello, pvgate! ~{x|y}") {
                s.apply(e);
            }
            let mut f = busy(w, h);
            draw_overlay(&mut f, &s);
            assert_eq!(
                read_text_line(&f.view()),
                "Hello, pvgate! ~{x|y}",
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn text_line_shows_the_tail_of_long_text() {
        let mut s = InputState::new(640, 360);
        let text: String = (0..60).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        for e in events_for_text(&text) {
            s.apply(e);
        }
        let mut f = busy(640, 360);
        draw_overlay(&mut f, &s);
        assert_eq!(read_text_line(&f.view()), text[60 - TEXT_COLS as usize..]);
    }

    #[test]
    fn text_line_reads_after_mild_damage_and_scaling() {
        let mut s = InputState::new(1280, 720);
        for e in events_for_text("The quick brown fox 0123") {
            s.apply(e);
        }
        let mut f = busy(1280, 720);
        draw_overlay(&mut f, &s);
        let damaged = degrade::jpeg_like(&degrade::add_noise(&f, 10, 9), 8);
        assert_eq!(read_text_line(&damaged.view()), "The quick brown fox 0123");
        let video_like = degrade::jpeg_like(&degrade::chroma_420(&f), 12);
        assert_eq!(
            read_text_line(&video_like.view()),
            "The quick brown fox 0123"
        );
        let big = busy(1920, 1080);
        let mut s = InputState::new(1920, 1080);
        for e in events_for_text("scaled TEXT") {
            s.apply(e);
        }
        let mut f = big;
        draw_overlay(&mut f, &s);
        let scaled = degrade::scale_bilinear(&f, 1280, 720);
        assert_eq!(read_text_line(&scaled.view()), "scaled TEXT");
    }

    #[test]
    fn buttons_round_trip() {
        let mut s = InputState::new(640, 360);
        let mut f = busy(640, 360);
        draw_overlay(&mut f, &s);
        assert_eq!(read_buttons(&f.view()), Buttons::default());
        s.apply(InputEvent::Key {
            code: BTN_LEFT,
            pressed: true,
        });
        s.apply(InputEvent::Button {
            code: BTN_RIGHT,
            pressed: true,
        });
        draw_overlay(&mut f, &s);
        assert_eq!(
            read_buttons(&f.view()),
            Buttons {
                left: true,
                middle: false,
                right: true
            }
        );
    }

    #[test]
    fn touches_are_drawn_per_contact_and_do_not_look_like_the_cursor() {
        let mut s = InputState::new(640, 360);
        s.apply(InputEvent::Motion { x: 500, y: 250 });
        let mut f0 = busy(640, 360);
        draw_overlay(&mut f0, &s);
        s.apply(InputEvent::TouchDown {
            id: 0,
            x: 100,
            y: 150,
        });
        s.apply(InputEvent::TouchDown {
            id: 1,
            x: 300,
            y: 150,
        });
        let mut f1 = busy(640, 360);
        draw_overlay(&mut f1, &s);
        assert_eq!(
            f1.get(100, 150).map(|p| p != f0.get(100, 150).unwrap()),
            Some(true)
        );
        // Distinct colours for distinct ids (sampled off the digit, inside the disc).
        let r = 360 / 30 - 1;
        assert_ne!(f1.get(100, 150 + r), f1.get(300, 150 + r));
        assert_eq!(find_cursor(&f1.view()), Some((500, 250)));
    }
}
