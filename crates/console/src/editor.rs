//! The YAML editor: CodeMirror 6 (a maintained editor component from npm) bundled at build
//! time into `assets/editor.js` by `scripts/build-console-editor.sh`, from the pinned
//! `crates/console/editor/package-lock.json`; the binary embeds the bundle, so the console
//! fetches nothing from the network. It takes over every `textarea[data-editor=yaml]`: syntax
//! highlighting, line numbers, and the line of an error (`data-error-line`) marked. Without
//! JavaScript the text area still works.

/// The bundled editor script.
pub const SCRIPT: &str = include_str!("../assets/editor.js");

/// The line an error message names ("yaml: line 7, column 3: ..." as the API server and
/// upstream say it, or "line 7" as the import's own parser does), if any.
pub fn error_line(message: &str) -> Option<usize> {
    let mut start = 0;
    while let Some(at) = message[start..].find("line ") {
        let at = start + at;
        start = at + "line ".len();
        // "line" as a word: not the end of "deadline".
        if message[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
        {
            continue;
        }
        let digits: String = message[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(line) = digits.parse::<usize>()
            && line > 0
        {
            return Some(line);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_of_an_error_is_read_from_its_message() {
        assert_eq!(
            error_line(
                "error converting YAML to JSON: yaml: line 7, column 3: did not find expected key"
            ),
            Some(7)
        );
        assert_eq!(error_line("YAML error at line 2, column 1: x"), Some(2));
        assert_eq!(error_line("a deadline 5 lines long"), None);
        assert_eq!(error_line("spec.template: Required value"), None);
    }
}
