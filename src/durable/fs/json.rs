//! JSON limits: a nesting check that never recurses (safe on hostile input) before any
//! recursive parser sees the bytes.

/// Whether `bytes` nest JSON arrays/objects deeper than `max_depth`. A plain scan (no
/// recursion), so it is safe to run on hostile input before a recursive parser sees it.
pub fn json_nesting_exceeds(bytes: &[u8], max_depth: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Checks that `bytes` are one JSON value nesting at most `max_depth` deep.
pub fn validate_json(bytes: &[u8], max_depth: usize) -> std::result::Result<(), String> {
    if json_nesting_exceeds(bytes, max_depth) {
        return Err(format!("JSON nests deeper than {max_depth} levels"));
    }
    // Parsed into a `Value`, not skimmed: skimming lets lone surrogates and invalid UTF-8
    // inside strings through, which a reader parsing the data would then refuse.
    serde_json::from_slice::<serde_json::Value>(bytes).map(|_| ()).map_err(|e| format!("not valid JSON: {e}"))
}

/// Parses `bytes` into `T` after the depth check.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max_depth: usize,
) -> std::result::Result<T, String> {
    if json_nesting_exceeds(bytes, max_depth) {
        return Err(format!("JSON nests deeper than {max_depth} levels"));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_limit_is_explicit() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(validate_json(deep(100).as_bytes(), 100).is_ok());
        assert!(validate_json(deep(101).as_bytes(), 100).unwrap_err().contains("deeper"));
        // Brackets inside strings do not count; escaped quotes do not end the string.
        let text = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(validate_json(text.as_bytes(), 2).is_ok());
        assert!(validate_json(b"{\"a\":1", 100).unwrap_err().contains("not valid JSON"));
        assert!(validate_json(b"{} {}", 100).is_err());
        // Deep input never reaches the recursive parser.
        let hostile = "[".repeat(1_000_000);
        assert!(parse_json::<serde_json::Value>(hostile.as_bytes(), 100).unwrap_err().contains("deeper"));
    }
}
