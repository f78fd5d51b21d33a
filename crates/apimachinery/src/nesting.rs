//! How deeply a YAML document nests its flow collections (`[...]`, `{...}`), found in one linear
//! pass before parsing. The YAML parser's cost grows with the square of the depth (60,000 levels
//! in 120 KB cost 9 s of CPU), so bodies nested deeper than JSON's own limit are refused first.
//! Block collections need more indentation per level, so the body size limit bounds their depth.

/// The deepest a request body may nest, as serde_json's own recursion limit for JSON.
pub const MAX_DEPTH: usize = 128;

/// The deepest nesting of flow collections in `yaml`. Quoted scalars and comments are skipped;
/// a quote only opens a scalar where a token may start, so `it's` is plain text.
pub fn flow_depth(yaml: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut i = 0;
    let mut token_start = true;
    while i < yaml.len() {
        let b = yaml[i];
        match b {
            b'"' if token_start => {
                i += 1;
                while i < yaml.len() && yaml[i] != b'"' {
                    i += if yaml[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' if token_start => {
                i += 1;
                while i < yaml.len() {
                    if yaml[i] == b'\'' {
                        if yaml.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'#' if token_start => {
                while i < yaml.len() && yaml[i] != b'\n' {
                    i += 1;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        token_start = matches!(
            yaml.get(i),
            Some(b' ' | b'\t' | b'\n' | b'\r' | b'[' | b'{' | b',' | b':' | b'-')
        );
        i += 1;
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_flow_nesting_and_skips_quotes_and_comments() {
        assert_eq!(flow_depth(b"a: 1\nb: [1, {c: [2]}]\n"), 3);
        assert_eq!(
            flow_depth(b"a: \"[[[[\"\nb: '{{{'\n# [[[[[\nc: it's [x]\n"),
            1
        );
        assert_eq!(flow_depth(b"a: 'it''s [[['\n"), 0);
        assert_eq!(flow_depth(b"{\"a\": {\"b\": [\"\\\"[[\"]}}"), 3);
        let deep = "[".repeat(60_000) + &"]".repeat(60_000);
        assert_eq!(flow_depth(deep.as_bytes()), 60_000);
        // Block nesting is not counted: indentation bounds it.
        assert_eq!(flow_depth(b"a:\n  b:\n    c:\n      - d\n"), 0);
    }
}
