//! Errors located in a program's source, shown as rustc shows its own: the
//! message, `--> file:line:column`, the offending line and a caret under
//! the position. Rendered by `annotate-snippets` (rustc's renderer), in
//! colour only when stderr is a terminal and `NO_COLOR` is unset (the
//! rule the worker's logs follow, `cohort_worker::telemetry::colours`).
//!
//! Positions come from `program::CompileError` and the planner's
//! `PlanError`: 1-based lines and columns, columns counting characters.

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};

/// Whether diagnostics on stderr carry ANSI colour codes.
pub fn colour() -> bool {
    cohort_worker::telemetry::colours()
}

/// `message` at `line`/`column` of `source` (read from `origin`), with the
/// source line and a caret. A position past the end of its line points
/// just after the line's last character; a line past the end of the source
/// points at its end.
pub fn render(origin: &str, source: &str, line: u32, column: u32, message: &str, colour: bool) -> String {
    let span = span_at(source, line, column);
    let report = &[Level::ERROR
        .primary_title(message)
        .element(Snippet::source(source).path(origin).annotation(AnnotationKind::Primary.span(span)))];
    let renderer = if colour { Renderer::styled() } else { Renderer::plain() };
    renderer.render(report)
}

/// The byte range of the character at a 1-based line and column (empty at
/// the end of a line or of the source).
fn span_at(source: &str, line: u32, column: u32) -> std::ops::Range<usize> {
    let mut start = 0;
    for _ in 1..line.max(1) {
        match source[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return source.len()..source.len(),
        }
    }
    let text = &source[start..];
    let text = &text[..text.find('\n').unwrap_or(text.len())];
    let text = text.strip_suffix('\r').unwrap_or(text);
    let mut chars = text.char_indices().skip(column.max(1) as usize - 1);
    match chars.next() {
        Some((i, c)) => start + i..start + i + c.len_utf8(),
        None => start + text.len()..start + text.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caret_is_under_the_column_counted_in_characters() {
        let source = "input x: int[] from a\nlet é = x + y\noutput s = sum(é)\n";
        let shown = render("p.cohort", source, 2, 13, "unknown name `y`", false);
        assert_eq!(
            shown,
            "error: unknown name `y`\n \
             --> p.cohort:2:13\n  \
             |\n\
             2 | let é = x + y\n  \
             |             ^\n"
                .trim_end_matches('\n'),
            "{shown}"
        );
        assert!(!shown.contains('\x1b'));
        assert!(render("p", source, 2, 13, "m", true).contains('\x1b'), "styled when asked");
    }

    #[test]
    fn positions_past_the_end_are_clamped() {
        let source = "input x: int from a\noutput s = x +";
        assert_eq!(span_at(source, 2, 15), 34..34);
        assert_eq!(span_at(source, 2, 99), 34..34);
        assert_eq!(span_at(source, 9, 1), source.len()..source.len());
        assert_eq!(span_at("a\r\nbc\r\n", 2, 3), 5..5);
        let shown = render("p", source, 2, 15, "expected an expression", false);
        assert!(shown.contains("2 | output s = x +\n  |               ^"), "{shown}");
    }
}
