//! The parser: tokens to an [`ast::Program`], by recursive descent.
//!
//! Statements need no terminator: each starts with a reserved word
//! (`fixed_point`, `input`, `let`, `output`), and an expression ends at the
//! first token that cannot continue it. The parser keeps at most one token
//! of lookahead, which lets it switch the lexer into party mode exactly
//! where a party name is expected (see [`super::lexer`]).

use super::CompileError;
use super::ast::{BinOp, Expr, ExprKind, Name, OwnerSpec, Program, Recipients, Stmt};
use super::ir::{ElemType, InputShape, Span};
use super::lexer::{Lexer, Tok, Token};

/// Parse a whole program.
pub fn parse(src: &str) -> Result<Program, CompileError> {
    let mut p = Parser { lexer: Lexer::new(src), peeked: None, operations: 0 };
    p.program()
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_NESTING: usize = 200;

/// Operators, calls and indexings allowed in one statement. This bounds the
/// height of the syntax tree (left-deep chains such as `a + b + ...`
/// included), and with it the recursion of the later passes.
const MAX_OPERATIONS: usize = 1000;

struct Parser {
    lexer: Lexer,
    peeked: Option<Token>,
    /// Operations in the current statement (see [`MAX_OPERATIONS`]).
    operations: usize,
}

fn err(span: Span, message: impl Into<String>) -> CompileError {
    CompileError { line: span.line, column: span.column, message: message.into() }
}

impl Parser {
    fn peek(&mut self) -> Result<&Token, CompileError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn next(&mut self) -> Result<Token, CompileError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    /// A party name; must be called with no token peeked.
    fn party(&mut self) -> Result<Name, CompileError> {
        debug_assert!(self.peeked.is_none(), "party mode after lookahead");
        let (text, span) = self.lexer.party_name()?;
        Ok(Name { text, span })
    }

    fn count_operation(&mut self, span: Span) -> Result<(), CompileError> {
        self.operations += 1;
        if self.operations > MAX_OPERATIONS {
            return Err(err(
                span,
                format!(
                    "expression too large: more than {MAX_OPERATIONS} operations in one statement; split it with `let`"
                ),
            ));
        }
        Ok(())
    }

    fn expect(&mut self, want: Tok, context: &str) -> Result<Token, CompileError> {
        let t = self.next()?;
        if t.tok == want {
            Ok(t)
        } else {
            Err(err(t.span, format!("expected {} {context}, found {}", want.describe(), t.tok.describe())))
        }
    }

    fn ident(&mut self, context: &str) -> Result<Name, CompileError> {
        let t = self.next()?;
        match t.tok {
            Tok::Ident(text) => Ok(Name { text, span: t.span }),
            other => Err(err(t.span, format!("expected a name {context}, found {}", other.describe()))),
        }
    }

    fn program(&mut self) -> Result<Program, CompileError> {
        let mut frac_bits = None;
        let mut range_check = None;
        let mut stmts = Vec::new();
        loop {
            self.operations = 0;
            let t = self.next()?;
            match t.tok {
                Tok::Eof => break,
                Tok::FixedPoint => {
                    if let Some((_, first)) = frac_bits {
                        return Err(err(t.span, format!("`fixed_point` is already set at {first}")));
                    }
                    if !stmts.is_empty() {
                        return Err(err(t.span, "`fixed_point` must come before every other statement"));
                    }
                    let n = self.next()?;
                    match n.tok {
                        Tok::Int(v) if v <= crate::fixed::MAX_FRAC_BITS as i64 => frac_bits = Some((v as u32, n.span)),
                        Tok::Int(_) => {
                            return Err(err(
                                n.span,
                                format!(
                                    "`fixed_point` must be between 0 and {} fractional bits",
                                    crate::fixed::MAX_FRAC_BITS
                                ),
                            ));
                        }
                        other => {
                            return Err(err(
                                n.span,
                                format!(
                                    "expected the number of fractional bits after `fixed_point`, found {}",
                                    other.describe()
                                ),
                            ));
                        }
                    }
                }
                Tok::RangeCheck => {
                    if let Some(first) = range_check {
                        return Err(err(t.span, format!("`range_check` is already set at {first}")));
                    }
                    if !stmts.is_empty() {
                        return Err(err(t.span, "`range_check` must come before every other statement"));
                    }
                    range_check = Some(t.span);
                }
                Tok::Input => stmts.push(self.input(t.span)?),
                Tok::Let => {
                    let name = self.ident("after `let`")?;
                    self.expect(Tok::Eq, "after the name")?;
                    let value = self.expr(0)?;
                    stmts.push(Stmt::Let { name, value, span: t.span });
                }
                Tok::Output => stmts.push(self.output(t.span)?),
                other => {
                    let what = if stmts.is_empty() && frac_bits.is_none() {
                        format!("expected a statement (`input`, `let` or `output`), found {}", other.describe())
                    } else {
                        format!(
                            "expected an operator or a new statement (`input`, `let` or `output`), found {}",
                            other.describe()
                        )
                    };
                    return Err(err(t.span, what));
                }
            }
        }
        Ok(Program { frac_bits, range_check, stmts })
    }

    fn input(&mut self, span: Span) -> Result<Stmt, CompileError> {
        let name = self.ident("after `input`")?;
        self.expect(Tok::Colon, "after the input name")?;
        let t = self.next()?;
        let elem = match t.tok {
            Tok::IntType => ElemType::Int,
            Tok::FixedType => ElemType::Fixed,
            Tok::BoolType => ElemType::Bool,
            other => {
                return Err(err(
                    t.span,
                    format!(
                        "expected a type (`int`, `fixed` or `bool`, `[]` for a vector), found {}",
                        other.describe()
                    ),
                ));
            }
        };
        let shape = if self.peek()?.tok == Tok::LBracket {
            self.next()?;
            self.expect(Tok::RBracket, "to close `[` in a vector type")?;
            InputShape::Vector
        } else {
            InputShape::Scalar
        };
        self.expect(Tok::From, "after the input type (who provides it: `from PARTY` or `from each`)")?;
        let owner = self.party()?;
        let owners = if owner.text == "each" {
            // `from each party` reads naturally; accept the noise word.
            if let Tok::Ident(w) = &self.peek()?.tok
                && (w == "party" || w == "parties")
            {
                self.next()?;
            }
            OwnerSpec::Each
        } else if owner.text == "all" {
            return Err(err(owner.span, "use `from each` for an input every party contributes"));
        } else {
            OwnerSpec::Party(owner)
        };
        Ok(Stmt::Input { name, elem, shape, owners, span })
    }

    fn output(&mut self, span: Span) -> Result<Stmt, CompileError> {
        let name = self.ident("after `output`")?;
        self.expect(Tok::Eq, "after the output name")?;
        let value = self.expr(0)?;
        let to = if self.peek()?.tok == Tok::To {
            self.next()?;
            let mut names = vec![self.party()?];
            while self.peek()?.tok == Tok::Comma {
                self.next()?;
                names.push(self.party()?);
            }
            match names.iter().find(|n| n.text == "all") {
                Some(_) if names.len() == 1 => Recipients::All,
                Some(all) => {
                    return Err(err(all.span, "`to all` cannot be combined with named parties"));
                }
                None => Recipients::Parties(names),
            }
        } else {
            Recipients::All
        };
        Ok(Stmt::Output { name, value, to, span })
    }

    /// expr := or_expr. The levels, loosest first: `or`, `xor`, `and`,
    /// `not`, one comparison, `+ -`, `* /`, unary `- +`, postfix.
    fn expr(&mut self, depth: usize) -> Result<Expr, CompileError> {
        self.logic(depth, 0)
    }

    /// or_expr := xor_expr ('or' xor_expr)*; xor_expr := and_expr ('xor'
    /// and_expr)*; and_expr := not_expr ('and' not_expr)*. `level` 0, 1, 2.
    fn logic(&mut self, depth: usize, level: usize) -> Result<Expr, CompileError> {
        const LEVELS: [(Tok, BinOp); 3] = [(Tok::Or, BinOp::Or), (Tok::Xor, BinOp::Xor), (Tok::And, BinOp::And)];
        let operand = |p: &mut Self| if level + 1 < LEVELS.len() { p.logic(depth, level + 1) } else { p.not(depth) };
        let mut lhs = operand(self)?;
        let (tok, op) = &LEVELS[level];
        while self.peek()?.tok == *tok {
            let op_span = self.next()?.span;
            self.count_operation(op_span)?;
            let rhs = operand(self)?;
            let span = lhs.span;
            lhs = Expr { kind: ExprKind::Binary { op: *op, op_span, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span };
        }
        Ok(lhs)
    }

    /// not_expr := 'not' not_expr | comparison
    fn not(&mut self, depth: usize) -> Result<Expr, CompileError> {
        let t = self.peek()?;
        let span = t.span;
        if t.tok != Tok::Not {
            return self.comparison(depth);
        }
        if depth > MAX_NESTING {
            return Err(err(span, "expression nested too deeply"));
        }
        self.next()?;
        self.count_operation(span)?;
        let inner = self.not(depth + 1)?;
        Ok(Expr { kind: ExprKind::Not(Box::new(inner)), span })
    }

    /// comparison := additive [('<' | '<=' | '>' | '>=' | '==' | '!=')
    /// additive]. Comparisons do not chain: `a < b < c` is an error at the
    /// second operator.
    fn comparison(&mut self, depth: usize) -> Result<Expr, CompileError> {
        let lhs = self.additive(depth)?;
        let Some(op) = comparison_op(&self.peek()?.tok) else {
            return Ok(lhs);
        };
        let op_span = self.next()?.span;
        self.count_operation(op_span)?;
        let rhs = self.additive(depth)?;
        let next = self.peek()?;
        if let Some(second) = comparison_op(&next.tok) {
            return Err(err(
                next.span,
                format!(
                    "comparisons do not chain: `a {} b {} c` is ambiguous; write `a {} b and b {} c`, or \
                     parenthesize to compare a bool",
                    op.symbol(),
                    second.symbol(),
                    op.symbol(),
                    second.symbol()
                ),
            ));
        }
        let span = lhs.span;
        Ok(Expr { kind: ExprKind::Binary { op, op_span, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span })
    }

    /// additive := multiplicative (('+' | '-') multiplicative)*
    fn additive(&mut self, depth: usize) -> Result<Expr, CompileError> {
        let mut lhs = self.term(depth)?;
        loop {
            let op = match self.peek()?.tok {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(lhs),
            };
            let op_span = self.next()?.span;
            self.count_operation(op_span)?;
            let rhs = self.term(depth)?;
            let span = lhs.span;
            lhs = Expr { kind: ExprKind::Binary { op, op_span, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span };
        }
    }

    /// multiplicative := unary (('*' | '/') unary)*
    fn term(&mut self, depth: usize) -> Result<Expr, CompileError> {
        let mut lhs = self.unary(depth)?;
        loop {
            let op = match self.peek()?.tok {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                _ => return Ok(lhs),
            };
            let op_span = self.next()?.span;
            self.count_operation(op_span)?;
            let rhs = self.unary(depth)?;
            let span = lhs.span;
            lhs = Expr { kind: ExprKind::Binary { op, op_span, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span };
        }
    }

    /// unary := ('-' | '+') unary | postfix
    fn unary(&mut self, depth: usize) -> Result<Expr, CompileError> {
        let t = self.peek()?;
        let span = t.span;
        if depth > MAX_NESTING {
            return Err(err(span, "expression nested too deeply"));
        }
        match t.tok {
            Tok::Minus => {
                self.next()?;
                self.count_operation(span)?;
                let inner = self.unary(depth + 1)?;
                Ok(Expr { kind: ExprKind::Neg(Box::new(inner)), span })
            }
            Tok::Plus => {
                self.next()?;
                self.unary(depth + 1)
            }
            _ => self.postfix(depth),
        }
    }

    /// postfix := primary ('[' PARTY ']')*
    fn postfix(&mut self, depth: usize) -> Result<Expr, CompileError> {
        let mut e = self.primary(depth)?;
        while self.peek()?.tok == Tok::LBracket {
            let open = self.next()?.span;
            self.count_operation(open)?;
            let party = self.party()?;
            self.expect(Tok::RBracket, "after the party name")?;
            let span = e.span;
            e = Expr { kind: ExprKind::Index { base: Box::new(e), party }, span };
        }
        Ok(e)
    }

    /// primary := INT | FLOAT | 'true' | 'false' | NAME | NAME '(' args ')' | '(' expr ')' | '[' args ']'
    fn primary(&mut self, depth: usize) -> Result<Expr, CompileError> {
        let t = self.next()?;
        let span = t.span;
        let kind = match t.tok {
            Tok::Int(v) => ExprKind::Int(v),
            Tok::Float(v) => ExprKind::Float(v),
            Tok::True => ExprKind::Bool(true),
            Tok::False => ExprKind::Bool(false),
            Tok::Ident(text) => {
                if self.peek()?.tok == Tok::LParen {
                    let open = self.next()?.span;
                    self.count_operation(span)?;
                    let mut args = Vec::new();
                    if self.peek()?.tok != Tok::RParen {
                        loop {
                            args.push(self.expr(depth + 1)?);
                            if self.peek()?.tok == Tok::Comma {
                                self.next()?;
                            } else {
                                break;
                            }
                        }
                    }
                    self.close(open)?;
                    ExprKind::Call { name: Name { text, span }, args }
                } else {
                    ExprKind::Var(text)
                }
            }
            Tok::LParen => {
                let inner = self.expr(depth + 1)?;
                self.close(span)?;
                return Ok(Expr { kind: inner.kind, span });
            }
            Tok::LBracket => {
                self.count_operation(span)?;
                let mut elements = Vec::new();
                if self.peek()?.tok != Tok::RBracket {
                    loop {
                        elements.push(self.expr(depth + 1)?);
                        if self.peek()?.tok == Tok::Comma {
                            self.next()?;
                        } else {
                            break;
                        }
                    }
                }
                let t = self.next()?;
                if t.tok != Tok::RBracket {
                    return Err(err(
                        t.span,
                        format!("expected `,` or `]` to close the `[` at {span}, found {}", t.tok.describe()),
                    ));
                }
                ExprKind::Vector(elements)
            }
            other => {
                return Err(err(span, format!("expected an expression, found {}", other.describe())));
            }
        };
        Ok(Expr { kind, span })
    }

    fn close(&mut self, open: Span) -> Result<(), CompileError> {
        let t = self.next()?;
        if t.tok == Tok::RParen {
            Ok(())
        } else {
            Err(err(t.span, format!("expected `)` to close the `(` at {open}, found {}", t.tok.describe())))
        }
    }
}

fn comparison_op(tok: &Tok) -> Option<BinOp> {
    Some(match tok {
        Tok::Less => BinOp::Less,
        Tok::LessEq => BinOp::LessEq,
        Tok::Greater => BinOp::Greater,
        Tok::GreaterEq => BinOp::GreaterEq,
        Tok::EqEq => BinOp::Eq,
        Tok::NotEq => BinOp::NotEq,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(src: &str) -> (u32, u32, String) {
        let e = parse(src).unwrap_err();
        (e.line, e.column, e.message)
    }

    #[test]
    fn parses_statements() {
        let p = parse(
            "fixed_point 20\ninput s: fixed[] from each party\ninput w: int from bank-a\n\
             let t = -s[bank-a] * (2 + w) / 3\noutput o = sum(t) to bank-a, b.c",
        )
        .unwrap();
        assert_eq!(p.frac_bits.map(|f| f.0), Some(20));
        assert_eq!(p.stmts.len(), 4);
        match &p.stmts[1] {
            Stmt::Input { owners: OwnerSpec::Party(n), shape: InputShape::Scalar, .. } => {
                assert_eq!(n.text, "bank-a");
                assert_eq!(n.span, Span { line: 3, column: 19 });
            }
            other => panic!("{other:?}"),
        }
        match &p.stmts[3] {
            Stmt::Output { to: Recipients::Parties(ps), .. } => {
                assert_eq!(ps.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(), vec!["bank-a", "b.c"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn precedence_and_minus() {
        let p = parse("let x = a-b*c").unwrap();
        let Stmt::Let { value, .. } = &p.stmts[0] else { panic!() };
        let ExprKind::Binary { op: BinOp::Sub, op_span, rhs, .. } = &value.kind else { panic!("{value:?}") };
        assert_eq!(*op_span, Span { line: 1, column: 10 });
        assert!(matches!(rhs.kind, ExprKind::Binary { op: BinOp::Mul, .. }));
    }

    /// The tree of an expression as a string, for precedence tests.
    fn shape(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Var(v) => v.clone(),
            ExprKind::Int(i) => i.to_string(),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Neg(x) => format!("(-{})", shape(x)),
            ExprKind::Not(x) => format!("(not {})", shape(x)),
            ExprKind::Binary { op, lhs, rhs, .. } => format!("({} {} {})", shape(lhs), op.symbol(), shape(rhs)),
            other => format!("{other:?}"),
        }
    }

    fn parsed(src: &str) -> String {
        let p = parse(&format!("let x = {src}")).unwrap_or_else(|e| panic!("{src}: {e}"));
        let Stmt::Let { value, .. } = &p.stmts[0] else { panic!() };
        shape(value)
    }

    #[test]
    fn comparison_and_logic_precedence() {
        assert_eq!(parsed("a + 1 < b * 2"), "((a + 1) < (b * 2))");
        assert_eq!(parsed("a or b xor c and not d"), "(a or (b xor (c and (not d))))");
        assert_eq!(parsed("not a < b and c >= -d"), "((not (a < b)) and (c >= (-d)))");
        assert_eq!(parsed("a and b and c or d"), "(((a and b) and c) or d)");
        assert_eq!(parsed("a xor b xor c"), "((a xor b) xor c)");
        assert_eq!(parsed("not not a == b"), "(not (not (a == b)))");
        assert_eq!(parsed("(a < b) == (c != d)"), "((a < b) == (c != d))");
        assert_eq!(parsed("true or false"), "(true or false)");
        assert_eq!(parsed("a <= b or a > b"), "((a <= b) or (a > b))");
    }

    #[test]
    fn comparisons_do_not_chain() {
        let (line, column, message) = parse_err("let x = a < b < c");
        assert_eq!((line, column), (1, 15));
        assert!(message.contains("comparisons do not chain"), "{message}");
        assert_eq!(parse_err("let x = a == b != c").1, 16);
        assert_eq!(parse_err("let x = a <").2, "expected an expression, found the end of the program");
        assert_eq!(parse_err("let x = not").1, 12);
        assert_eq!(parse_err("let x = a and or b").1, 15);
    }

    #[test]
    fn bool_inputs() {
        let p = parse("input f: bool[] from each\ninput g: bool from a").unwrap();
        assert!(matches!(&p.stmts[0], Stmt::Input { elem: ElemType::Bool, shape: InputShape::Vector, .. }));
        assert!(matches!(&p.stmts[1], Stmt::Input { elem: ElemType::Bool, shape: InputShape::Scalar, .. }));
    }

    #[test]
    fn multi_line_expressions() {
        let p = parse("let x = 1 +\n 2\n - 3\nlet y = x").unwrap();
        assert_eq!(p.stmts.len(), 2);
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(parse_err("let = 3").0, 1);
        assert_eq!(parse_err("let x 3"), (1, 7, "expected `=` after the name, found a number".into()));
        assert_eq!(parse_err("let x = (1 + 2\nlet y = 1").0, 2);
        assert!(parse_err("let x = (1 + 2\nlet y = 1").2.contains("line 1, column 9"));
        assert_eq!(parse_err("let x = 1 2").1, 11);
        assert_eq!(parse_err("x = 1").2, "expected a statement (`input`, `let` or `output`), found identifier `x`");
        assert_eq!(parse_err("input x: float from a").1, 10);
        assert_eq!(parse_err("input x: int[ from a").1, 15);
        assert_eq!(parse_err("input x: int a").1, 14);
        assert_eq!(parse_err("input x: int from").1, 18);
        assert_eq!(parse_err("let x = 1\nfixed_point 3").0, 2);
        assert!(parse_err("fixed_point 41").2.contains("between 0 and 40"));
        assert_eq!(parse_err("output x = y to all, a").1, 17);
        assert_eq!(parse_err("output x = y to a, all").1, 20);
        assert_eq!(parse_err("output x = y to a,").1, 19);
        assert_eq!(parse_err("let x = sum(a,)").1, 15);
        assert_eq!(parse_err("let x = *").1, 9);
        assert!(parse_err(&format!("let x = {}1", "(".repeat(500))).2.contains("nested too deeply"));
    }
}
