//! Plot helpers shared by the figures: the embedded font.

use plotters::style::FontStyle;

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the embedded DejaVu Sans as the "sans-serif" family (once per process), so figures
/// render the same on machines without system fonts.
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}
