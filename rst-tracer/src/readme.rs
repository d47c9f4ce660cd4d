//! The README's reference tables, read by the unit tests that keep them in step with the code
//! (finding codes, kernel counters): neither side can change without the other.

/// The names in backticks in the first column of the README table whose header line is
/// `header`, in table order.
///
/// # Panics
/// When the README has no such table: the test that asks for it fails, naming it.
pub fn first_column(header: &str) -> Vec<String> {
    let readme = include_str!("../../README.md");
    let table = readme
        .split(header)
        .nth(1)
        .unwrap_or_else(|| panic!("the README has no table headed {header:?}"));
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or("");
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}
