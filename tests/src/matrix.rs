//! The fault matrix: for each resource and operation (a Create; for HopsworksCluster an Update
//! and a Delete too), each step (before, during, after its side effect) and each fault, what
//! CloudFormation was told and what the rollback or delete left behind.
//!
//! The tests in `tests/fault_matrix.rs` play every cell against the compiled functions and write
//! the table; the README holds it between `<!-- fault-matrix:<resource> -->` markers and a test
//! fails when the two differ (`FAULT_MATRIX_WRITE=1` rewrites the README's copy).

use std::fmt;

/// Where in the operation under test the fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// On a call before anything is changed (a read).
    Before,
    /// On the call that makes the change: the change is applied, the caller may not know it.
    During,
    /// After the change, before CloudFormation has the answer.
    After,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::Before, Step::During, Step::After];

    fn label(self) -> &'static str {
        match self {
            Step::Before => "before",
            Step::During => "during",
            Step::After => "after",
        }
    }
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The call hangs past the invocation's time: the framework's timer answers.
    Timeout,
    /// The process dies mid-call (a panic under `abort`, out of memory, Lambda's kill): no
    /// answer; Lambda retries the asynchronous invocation in a new process. A panic under
    /// `unwind` is caught and answered as a timeout is (the framework's tests pin that).
    Crash,
    /// The call is applied but its answer never reaches the function.
    LostAnswer,
    /// The hand-over to the next invocation (`lambda:Invoke`) fails.
    HandOver,
    /// The same request is delivered twice at once, to two execution environments.
    Duplicate,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Timeout,
        FaultKind::Crash,
        FaultKind::LostAnswer,
        FaultKind::HandOver,
        FaultKind::Duplicate,
    ];

    fn label(self) -> &'static str {
        match self {
            FaultKind::Timeout => "timeout",
            FaultKind::Crash => "crash",
            FaultKind::LostAnswer => "lost answer",
            FaultKind::HandOver => "failed hand-over",
            FaultKind::Duplicate => "duplicate delivery",
        }
    }
}

/// One played cell.
#[derive(Debug, Clone)]
pub struct Cell {
    pub step: Step,
    pub fault: FaultKind,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The fault cannot happen at this step of this resource (no such call).
    NotApplicable,
    /// What CloudFormation was answered (`SUCCESS`/`FAILED`), what followed (`then`: "deleted"
    /// for the stack's Delete, "rolled back" for the rollback's, …), and what that left: `None`
    /// when the account was as before.
    Played {
        answer: String,
        then: &'static str,
        left: Option<String>,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::NotApplicable => f.write_str("n/a"),
            Outcome::Played { answer, then, left } => match left {
                None => write!(f, "{answer}, {then}: nothing left"),
                Some(what) => write!(f, "{answer}, {then}: **LEFT** {what}"),
            },
        }
    }
}

/// The markdown table of `cells` for `resource`: a row per step, a column per fault.
pub fn table(resource: &str, steps: &[(Step, &str)], cells: &[Cell]) -> String {
    let mut out = format!("| {resource}: step | ");
    out.push_str(
        &FaultKind::ALL
            .iter()
            .map(|f| f.label())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    out.push_str(" |\n|---|");
    out.push_str(&"---|".repeat(FaultKind::ALL.len()));
    out.push('\n');
    for (step, what) in steps {
        out.push_str(&format!("| {} ({what}) |", step.label()));
        for fault in FaultKind::ALL {
            let text = cells
                .iter()
                .find(|c| c.step == *step && c.fault == fault)
                .map_or_else(|| "n/a".to_owned(), |c| c.outcome.to_string());
            out.push_str(&format!(" {text} |"));
        }
        out.push('\n');
    }
    out
}

/// Compare `table` with the README's copy between the resource's markers, or write it there
/// with `FAULT_MATRIX_WRITE=1`. Returns the difference, if any.
pub fn readme_check(key: &str, table: &str) -> Result<(), String> {
    let path = crate::workspace().join("README.md");
    let readme = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let start = format!("<!-- fault-matrix:{key} -->\n");
    let end = format!("<!-- /fault-matrix:{key} -->");
    let (Some(a), Some(b)) = (readme.find(&start), readme.find(&end)) else {
        return Err(format!("README.md has no {start:?} … {end:?} block"));
    };
    let current = &readme[a + start.len()..b];
    if current == table {
        return Ok(());
    }
    if std::env::var_os("FAULT_MATRIX_WRITE").is_some() {
        let updated = format!("{}{table}{}", &readme[..a + start.len()], &readme[b..]);
        return std::fs::write(&path, updated).map_err(|e| e.to_string());
    }
    Err(format!(
        "the README's fault matrix for {key} is not what the bench measured \
         (FAULT_MATRIX_WRITE=1 rewrites it):\n--- README\n{current}--- measured\n{table}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_row_per_step_and_marks_what_was_left() {
        let cells = [
            Cell {
                step: Step::During,
                fault: FaultKind::Timeout,
                outcome: Outcome::Played {
                    answer: "FAILED".into(),
                    then: "rolled back",
                    left: None,
                },
            },
            Cell {
                step: Step::During,
                fault: FaultKind::Crash,
                outcome: Outcome::Played {
                    answer: "SUCCESS".into(),
                    then: "deleted",
                    left: Some("rule 80".into()),
                },
            },
        ];
        let t = table("R", &[(Step::During, "PUT")], &cells);
        assert!(t.contains("| during (PUT) | FAILED, rolled back: nothing left | SUCCESS, deleted: **LEFT** rule 80 | n/a |"), "{t}");
    }
}
