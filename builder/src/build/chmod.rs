//! `COPY/ADD --chmod`: an octal mode (`0755`) or, as BuildKit's Dockerfile frontend accepts
//! since 1.14, a symbolic one in chmod(1)'s words (`u+x,go-w`, `a=rX`). Parsed once by the
//! COPY step ([`super::copy`]) and applied to each copied path's own mode; the directories a
//! step creates on the way to its destination keep 0755 (BuildKit's rule, see
//! `moby/buildkit` issue 5943).

use super::StepError;

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Chmod {
    /// An octal mode: every copied path gets it.
    Octal(u32),
    /// Symbolic clauses, applied in order to each path's mode.
    Symbolic(Vec<Clause>),
}

/// One symbolic clause: who, then operations (`go-w`, `u=rwx+s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Clause {
    /// The bits of the classes named (`u`, `g`, `o`; none or `a` is all three).
    who: u32,
    ops: Vec<(char, Perms)>,
}

/// The permissions an operation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Perms {
    read: bool,
    write: bool,
    exec: bool,
    /// `X`: execute for directories and for files some class can already execute.
    exec_if: bool,
    setid: bool,
    sticky: bool,
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl Chmod {
    /// Parses `--chmod`'s value.
    pub(super) fn parse(text: &str) -> Result<Chmod, StepError> {
        let invalid = || {
            StepError::Invalid(format!(
                "invalid --chmod {text:?}: expected an octal mode such as 0755 or a symbolic one such as u+x,go-w"
            ))
        };
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return u32::from_str_radix(text, 8).ok().filter(|v| *v <= 0o7777).map(Chmod::Octal).ok_or_else(invalid);
        }
        text.split(',').map(|c| Clause::parse(c).ok_or_else(invalid)).collect::<Result<_, _>>().map(Chmod::Symbolic)
    }

    /// The mode a path of mode `mode` (permission bits) gets.
    pub(super) fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => clauses.iter().fold(mode & 0o7777, |m, c| c.apply(m, is_dir)),
        }
    }
}

impl Clause {
    fn parse(text: &str) -> Option<Clause> {
        let start = text.find(['+', '-', '='])?;
        let (who_text, mut rest) = text.split_at(start);
        let mut who = 0;
        for c in who_text.chars() {
            who |= match c {
                'u' => USER,
                'g' => GROUP,
                'o' => OTHER,
                'a' => USER | GROUP | OTHER,
                _ => return None,
            };
        }
        if who == 0 {
            who = USER | GROUP | OTHER;
        }
        let mut ops = Vec::new();
        while let Some(op) = rest.chars().next() {
            let tail = &rest[1..];
            let end = tail.find(['+', '-', '=']).unwrap_or(tail.len());
            let mut perms = Perms::default();
            for c in tail[..end].chars() {
                match c {
                    'r' => perms.read = true,
                    'w' => perms.write = true,
                    'x' => perms.exec = true,
                    'X' => perms.exec_if = true,
                    's' => perms.setid = true,
                    't' => perms.sticky = true,
                    _ => return None,
                }
            }
            ops.push((op, perms));
            rest = &tail[end..];
        }
        Some(Clause { who, ops })
    }

    fn apply(&self, mut mode: u32, is_dir: bool) -> u32 {
        for (op, p) in &self.ops {
            let exec = p.exec || (p.exec_if && (is_dir || mode & 0o111 != 0));
            let mut bits = 0;
            bits |= if p.read { 0o444 } else { 0 };
            bits |= if p.write { 0o222 } else { 0 };
            bits |= if exec { 0o111 } else { 0 };
            bits |= if p.setid { 0o6000 } else { 0 };
            bits |= if p.sticky { 0o1000 } else { 0 };
            let bits = bits & self.who;
            match op {
                '+' => mode |= bits,
                '-' => mode &= !bits,
                // `=` clears the classes' permission bits (not their set-id bits for
                // directories, as chmod(1) keeps them) and sets what it names.
                _ => mode = (mode & !(self.who & if is_dir { 0o1777 } else { 0o7777 })) | bits,
            }
        }
        mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_symbolic_modes() {
        assert_eq!(Chmod::parse("0755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("4755").unwrap(), Chmod::Octal(0o4755));
        let sym = Chmod::parse("u+x,go-w").unwrap();
        assert_eq!(sym.apply(0o666, false), 0o744);
        assert_eq!(sym.apply(0o775, true), 0o755);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o640, false), 0o444);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o700, true), 0o555);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o744, false), 0o555);
        assert_eq!(Chmod::parse("+x").unwrap().apply(0o644, false), 0o755);
        assert_eq!(Chmod::parse("o=").unwrap().apply(0o777, false), 0o770);
        assert_eq!(Chmod::parse("u=rw,g=r,o=").unwrap().apply(0o777, false), 0o640);
        assert_eq!(Chmod::parse("u+s,+t").unwrap().apply(0o755, false), 0o5755);
        assert_eq!(Chmod::parse("u-w+x").unwrap().apply(0o644, false), 0o544);
        for bad in ["", "8", "99999", "u+q", "z+x", "u", "0x755", "u+x,"] {
            assert!(Chmod::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
