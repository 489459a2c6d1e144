//! The lexer: source text to tokens, with 1-based line and column positions.
//!
//! Columns count Unicode scalar values (a tab is one column). Comments run
//! from `#` to the end of the line. Newlines are plain whitespace: statements
//! are recognized by their leading keyword, so an expression may span lines.
//!
//! Party names are lexed in a separate *party mode* ([`Lexer::party_name`])
//! that the parser enters only where a party name is expected (after `from`,
//! after `to` and its commas, and inside `list[...]`). In that mode a name is
//! a maximal run of ASCII letters, digits, `_`, `-` and `.`, so Kubernetes
//! names such as `bank-a` need no quoting, while everywhere else `-` is
//! always the minus operator (`a-b` is `a - b`).

use super::CompileError;
use super::ir::Span;

/// A token kind. Identifiers that are reserved words become keywords.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    /// An integer literal (no sign; range-checked by the lexer).
    Int(i64),
    /// A literal with a fractional part or an exponent.
    Float(f64),
    // Reserved words.
    Input,
    Let,
    Output,
    From,
    To,
    IntType,
    FixedType,
    BoolType,
    FixedPoint,
    RangeCheck,
    True,
    False,
    And,
    Or,
    Not,
    Xor,
    // Punctuation.
    Plus,
    Minus,
    Star,
    Slash,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Eq,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    Less,
    LessEq,
    Greater,
    GreaterEq,
    Eof,
}

impl Tok {
    /// How the token is named in error messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier `{s}`"),
            Tok::Int(_) | Tok::Float(_) => "a number".to_string(),
            Tok::Input => "`input`".into(),
            Tok::Let => "`let`".into(),
            Tok::Output => "`output`".into(),
            Tok::From => "`from`".into(),
            Tok::To => "`to`".into(),
            Tok::IntType => "`int`".into(),
            Tok::FixedType => "`fixed`".into(),
            Tok::BoolType => "`bool`".into(),
            Tok::FixedPoint => "`fixed_point`".into(),
            Tok::RangeCheck => "`range_check`".into(),
            Tok::True => "`true`".into(),
            Tok::False => "`false`".into(),
            Tok::And => "`and`".into(),
            Tok::Or => "`or`".into(),
            Tok::Not => "`not`".into(),
            Tok::Xor => "`xor`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Colon => "`:`".into(),
            Tok::Eq => "`=`".into(),
            Tok::EqEq => "`==`".into(),
            Tok::NotEq => "`!=`".into(),
            Tok::Less => "`<`".into(),
            Tok::LessEq => "`<=`".into(),
            Tok::Greater => "`>`".into(),
            Tok::GreaterEq => "`>=`".into(),
            Tok::Eof => "the end of the program".into(),
        }
    }
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// The reserved words: never names, in expressions or as party names.
pub const RESERVED: &[&str] = &[
    "input",
    "let",
    "output",
    "from",
    "to",
    "int",
    "fixed",
    "bool",
    "fixed_point",
    "range_check",
    "true",
    "false",
    "and",
    "or",
    "not",
    "xor",
];

/// Integer literals must be strictly below this (the ring's safe range).
const INT_LITERAL_BOUND: u64 = crate::fixed::SAFE_BOUND;

/// An on-demand lexer: the parser pulls one token at a time, choosing the
/// mode (ordinary token or party name).
pub struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: u32,
    column: u32,
}

fn err(span: Span, message: impl Into<String>) -> CompileError {
    CompileError { line: span.line, column: span.column, message: message.into() }
}

/// Characters allowed inside a party name (in party mode).
fn is_party_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

impl Lexer {
    pub fn new(src: &str) -> Self {
        Lexer { chars: src.chars().collect(), pos: 0, line: 1, column: 1 }
    }

    fn peek_char(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_char_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn here(&self) -> Span {
        Span { line: self.line, column: self.column }
    }

    /// Skip whitespace (including newlines) and `#` comments.
    fn skip_trivia(&mut self) {
        while let Some(c) = self.peek_char() {
            if c == '#' {
                while let Some(c) = self.peek_char() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else if c.is_whitespace() {
                self.bump();
            } else {
                break;
            }
        }
    }

    /// The next ordinary token.
    pub fn next_token(&mut self) -> Result<Token, CompileError> {
        self.skip_trivia();
        let span = self.here();
        let Some(c) = self.peek_char() else {
            return Ok(Token { tok: Tok::Eof, span });
        };
        let tok = match c {
            '+' => self.single(Tok::Plus),
            '-' => self.single(Tok::Minus),
            '*' => self.single(Tok::Star),
            '/' => self.single(Tok::Slash),
            '(' => self.single(Tok::LParen),
            ')' => self.single(Tok::RParen),
            '[' => self.single(Tok::LBracket),
            ']' => self.single(Tok::RBracket),
            ',' => self.single(Tok::Comma),
            ':' => self.single(Tok::Colon),
            '=' if self.peek_char_at(1) == Some('=') => self.double(Tok::EqEq),
            '=' => self.single(Tok::Eq),
            '!' if self.peek_char_at(1) == Some('=') => self.double(Tok::NotEq),
            '!' => return Err(err(span, "invalid character `!`; write `not` for negation and `!=` for inequality")),
            '<' if self.peek_char_at(1) == Some('=') => self.double(Tok::LessEq),
            '<' => self.single(Tok::Less),
            '>' if self.peek_char_at(1) == Some('=') => self.double(Tok::GreaterEq),
            '>' => self.single(Tok::Greater),
            '&' | '|' | '^' => {
                let word = match c {
                    '&' => "and",
                    '|' => "or",
                    _ => "xor",
                };
                return Err(err(span, format!("invalid character `{c}`; the logical operators are words: `{word}`")));
            }
            c if c.is_ascii_digit() => self.number(span)?,
            '.' if self.peek_char_at(1).is_some_and(|d| d.is_ascii_digit()) => {
                return Err(err(span, "a number must start with a digit (write `0.5`, not `.5`)"));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::new();
                while let Some(c) = self.peek_char() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        word.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                match word.as_str() {
                    "input" => Tok::Input,
                    "let" => Tok::Let,
                    "output" => Tok::Output,
                    "from" => Tok::From,
                    "to" => Tok::To,
                    "int" => Tok::IntType,
                    "fixed" => Tok::FixedType,
                    "bool" => Tok::BoolType,
                    "fixed_point" => Tok::FixedPoint,
                    "range_check" => Tok::RangeCheck,
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "xor" => Tok::Xor,
                    _ => Tok::Ident(word),
                }
            }
            other => {
                let shown = if other.is_control() { format!("{:?}", other) } else { format!("`{other}`") };
                return Err(err(span, format!("invalid character {shown}")));
            }
        };
        Ok(Token { tok, span })
    }

    fn single(&mut self, tok: Tok) -> Tok {
        self.bump();
        tok
    }

    fn double(&mut self, tok: Tok) -> Tok {
        self.bump();
        self.bump();
        tok
    }

    fn number(&mut self, span: Span) -> Result<Tok, CompileError> {
        let mut text = String::new();
        let mut is_float = false;
        let take_digits = |lx: &mut Self, text: &mut String| {
            let mut any = false;
            while let Some(c) = lx.peek_char() {
                if c.is_ascii_digit() {
                    text.push(c);
                    any = true;
                    lx.bump();
                } else if c == '_' && lx.peek_char_at(1).is_some_and(|d| d.is_ascii_digit()) && any {
                    lx.bump();
                } else {
                    break;
                }
            }
            any
        };
        take_digits(self, &mut text);
        if self.peek_char() == Some('.') {
            is_float = true;
            text.push('.');
            self.bump();
            if !take_digits(self, &mut text) {
                return Err(err(self.here(), "expected digits after the decimal point"));
            }
        }
        if matches!(self.peek_char(), Some('e' | 'E')) {
            is_float = true;
            text.push('e');
            self.bump();
            if let Some(sign @ ('+' | '-')) = self.peek_char() {
                text.push(sign);
                self.bump();
            }
            if !take_digits(self, &mut text) {
                return Err(err(self.here(), "expected digits in the exponent"));
            }
        }
        if let Some(c) = self.peek_char()
            && (c.is_ascii_alphabetic() || c == '_' || c == '.')
        {
            return Err(err(self.here(), format!("invalid character `{c}` in a number")));
        }
        if is_float {
            let v: f64 = text.parse().map_err(|_| err(span, "invalid number"))?;
            if !v.is_finite() {
                return Err(err(span, "number too large"));
            }
            Ok(Tok::Float(v))
        } else {
            match text.parse::<u64>() {
                Ok(v) if v < INT_LITERAL_BOUND => Ok(Tok::Int(v as i64)),
                _ => Err(err(span, "integer literal out of range: integers must lie strictly between -2^62 and 2^62")),
            }
        }
    }

    /// A party name, lexed in party mode: a maximal run of ASCII letters,
    /// digits, `_`, `-` and `.`, starting and ending with a letter, digit or
    /// `_`. Returns the name and where it starts.
    pub fn party_name(&mut self) -> Result<(String, Span), CompileError> {
        self.skip_trivia();
        let span = self.here();
        let mut name = String::new();
        while let Some(c) = self.peek_char() {
            if is_party_char(c) {
                name.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if name.is_empty() {
            let found = match self.peek_char() {
                None => "the end of the program".to_string(),
                Some(c) => format!("`{c}`"),
            };
            return Err(err(span, format!("expected a party name, found {found}")));
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(err(span, format!("expected a party name, found the reserved word `{name}`")));
        }
        let first = name.chars().next().expect("non-empty");
        let last = name.chars().last().expect("non-empty");
        if !(first.is_ascii_alphanumeric() || first == '_') || !(last.is_ascii_alphanumeric() || last == '_') {
            return Err(err(
                span,
                format!("invalid party name `{name}`: a party name must start and end with a letter, digit or `_`"),
            ));
        }
        Ok((name, span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token().unwrap();
            if t.tok == Tok::Eof {
                return out;
            }
            out.push(t.tok);
        }
    }

    fn lex_err(src: &str) -> CompileError {
        let mut lx = Lexer::new(src);
        loop {
            match lx.next_token() {
                Ok(t) if t.tok == Tok::Eof => panic!("no error in {src:?}"),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }

    #[test]
    fn tokens_and_keywords() {
        assert_eq!(
            toks("let x = a-b # comment\n * 2.5e1 / 1_000"),
            vec![
                Tok::Let,
                Tok::Ident("x".into()),
                Tok::Eq,
                Tok::Ident("a".into()),
                Tok::Minus,
                Tok::Ident("b".into()),
                Tok::Star,
                Tok::Float(25.0),
                Tok::Slash,
                Tok::Int(1000),
            ]
        );
        assert_eq!(
            toks("fixed[] int fixed_point all each"),
            vec![
                Tok::FixedType,
                Tok::LBracket,
                Tok::RBracket,
                Tok::IntType,
                Tok::FixedPoint,
                Tok::Ident("all".into()),
                Tok::Ident("each".into()),
            ]
        );
    }

    #[test]
    fn comparison_and_logic_tokens() {
        assert_eq!(
            toks("a<b<=c>d>=e==f!=g = and or not xor true false bool"),
            vec![
                Tok::Ident("a".into()),
                Tok::Less,
                Tok::Ident("b".into()),
                Tok::LessEq,
                Tok::Ident("c".into()),
                Tok::Greater,
                Tok::Ident("d".into()),
                Tok::GreaterEq,
                Tok::Ident("e".into()),
                Tok::EqEq,
                Tok::Ident("f".into()),
                Tok::NotEq,
                Tok::Ident("g".into()),
                Tok::Eq,
                Tok::And,
                Tok::Or,
                Tok::Not,
                Tok::Xor,
                Tok::True,
                Tok::False,
                Tok::BoolType,
            ]
        );
        // `a = = b` is two `=`, not `==`; `andy` is a name.
        assert_eq!(toks("= = andy"), vec![Tok::Eq, Tok::Eq, Tok::Ident("andy".into())]);
        let e = lex_err("a ! b");
        assert_eq!((e.line, e.column), (1, 3));
        assert!(e.message.contains("`not`"), "{e}");
        assert!(lex_err("a && b").message.contains("`and`"));
        assert!(lex_err("a || b").message.contains("`or`"));
        assert!(lex_err("a ^ b").message.contains("`xor`"));
        let mut lx = Lexer::new("xor");
        assert!(lx.party_name().unwrap_err().message.contains("reserved word `xor`"));
    }

    #[test]
    fn positions_count_characters() {
        let mut lx = Lexer::new("é = 1\n  \tx");
        let e = lx.next_token().unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        let mut lx = Lexer::new("a =\n  \tx");
        lx.next_token().unwrap();
        assert_eq!(lx.next_token().unwrap().span, Span { line: 1, column: 3 });
        assert_eq!(lx.next_token().unwrap().span, Span { line: 2, column: 4 });
    }

    #[test]
    fn bad_tokens() {
        let e = lex_err("let x = 1.");
        assert_eq!((e.line, e.column), (1, 11));
        assert!(e.message.contains("decimal point"));
        let e = lex_err("let x = 1e+");
        assert!(e.message.contains("exponent"));
        let e = lex_err("let x = 12abc");
        assert_eq!((e.line, e.column), (1, 11));
        let e = lex_err("x $ y");
        assert_eq!((e.line, e.column, e.message.as_str()), (1, 3, "invalid character `$`"));
        let e = lex_err("99999999999999999999");
        assert!(e.message.contains("out of range"));
        assert!(lex_err("4611686018427387904").message.contains("out of range"));
        assert_eq!(toks("4611686018427387903"), vec![Tok::Int((1 << 62) - 1)]);
        assert!(lex_err("1e999").message.contains("too large"));
        assert!(lex_err(".5").message.contains("start with a digit"));
    }

    #[test]
    fn party_mode() {
        let mut lx = Lexer::new("  bank-a.eu, x");
        assert_eq!(lx.party_name().unwrap(), ("bank-a.eu".into(), Span { line: 1, column: 3 }));
        assert_eq!(lx.next_token().unwrap().tok, Tok::Comma);
        let mut lx = Lexer::new("bank-");
        assert!(lx.party_name().unwrap_err().message.contains("invalid party name"));
        let mut lx = Lexer::new("\n let");
        let e = lx.party_name().unwrap_err();
        assert_eq!((e.line, e.column), (2, 2));
        assert!(e.message.contains("reserved word `let`"));
        let mut lx = Lexer::new(" ,");
        let e = lx.party_name().unwrap_err();
        assert_eq!((e.line, e.column), (1, 2));
        assert!(e.message.contains("expected a party name"));
    }
}
