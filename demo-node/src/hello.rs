//! `hello` mode: the seed's HelloWorld example, ported. Prints a greeting followed by a fixed,
//! numbered sequence of lines (the shape of Docker's hello-world output that the seed's
//! "multiple consecutive logging lines" monitor walks through), then exits 0.

use crate::util::{self, Config};
use std::time::Duration;

/// The lines, in order. Monitors match on their prefixes (`Hello from Docker`, `1. `, ...).
pub const LINES: [&str; 6] = [
    "Hello from Docker!",
    "This message shows that your installation appears to be working correctly.",
    "1. The Docker client contacted the Docker daemon.",
    "2. The Docker daemon created the container from the project's own FROM scratch image (nothing was pulled).",
    "3. The Docker daemon created a new container from that image which runs the executable that produces the output you are currently reading.",
    "4. The Docker daemon streamed that output to the Docker client, which sent it to your terminal.",
];

pub fn run(c: &Config) -> Result<i32, String> {
    let gap = c.duration("INTERVAL", Duration::ZERO)?;
    let delay = c.duration("DELAY", Duration::ZERO)?;
    let wait = c.string("THEN", "exit").eq_ignore_ascii_case("wait");
    // lets a recorder attach and start its experiment before the first line
    util::sleep_unless_stopping(delay);
    for l in LINES {
        util::out(l);
        util::sleep_unless_stopping(gap);
    }
    if wait {
        while !util::stopping() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn steps_are_numbered_in_order_after_the_greeting() {
        let greeting = super::LINES
            .iter()
            .position(|l| l.starts_with("Hello from Docker"))
            .unwrap();
        let steps: Vec<usize> = (1..=4)
            .map(|i| {
                super::LINES
                    .iter()
                    .position(|l| l.starts_with(&format!("{i}. ")))
                    .unwrap()
            })
            .collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]));
        assert!(greeting < steps[0]);
    }
}
