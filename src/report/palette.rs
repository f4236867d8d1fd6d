//! The report's colours, defined once: a status has the same colour in the terminal, the
//! state band, the markers and the verdict; series colours are kept apart from them so a
//! line never reads as a status.

use super::model::Status;

/// A status's colours: ANSI SGR code for terminals, CSS for light and dark pages.
pub struct StatusColour {
    pub ansi: &'static str,
    pub light: &'static str,
    pub dark: &'static str,
    /// A word beside the colour, for readers who cannot tell the colours apart.
    pub word: &'static str,
}

pub fn status_colour(status: Status) -> StatusColour {
    match status {
        Status::Ok => StatusColour { ansi: "32", light: "#1b7f3b", dark: "#4cc46f", word: "OK" },
        Status::Warn => StatusColour { ansi: "33", light: "#b35c00", dark: "#f0a030", word: "WARN" },
        Status::Fail => StatusColour { ansi: "31", light: "#c4242b", dark: "#ff5a5f", word: "FAIL" },
        Status::NoData => StatusColour { ansi: "90", light: "#9aa0a6", dark: "#5f6368", word: "NO DATA" },
    }
}

/// Line colours for series (GPU `i` takes `SERIES[i % len]`): blues, purples, teals and
/// pinks, none a status's green, amber, red or grey.
pub const SERIES: [&str; 8] = ["#2f6fdf", "#8e44d8", "#0e9bb0", "#d6338a", "#5a5fd6", "#13a08a", "#b04fc4", "#3d8fd1"];
