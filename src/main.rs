//! The `ivcsd` command: parses the command line and hands each subcommand to its module.
//! Exit status: 0 success, 1 failure (one line on stderr says what and why), 2 usage error.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use ivcsd::crypto::rc4plus::Kernel as Rc4PlusKernel;

fn main() -> ExitCode {
    // A typo in the variable that forces the rc4+ kernel is an error, not a silent choice.
    if let Err(err) = Rc4PlusKernel::forced() {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    // The kernel is measured only where it is shown; a peer measures it at its first keystream.
    let mut command = cli::Cli::command();
    if std::env::args_os().any(|arg| arg == "--version") {
        let (kernel, how) = Rc4PlusKernel::active();
        command = command.long_version(format!(
            "{}\nrc4+ kernel: {kernel} ({how})",
            env!("CARGO_PKG_VERSION")
        ));
    }
    let args = match cli::Cli::from_arg_matches(&command.get_matches()) {
        Ok(args) => args,
        Err(err) => err.exit(),
    };
    cli::init_logging(&args.global);
    if tracing::enabled!(tracing::Level::DEBUG) {
        let (kernel, how) = Rc4PlusKernel::active();
        tracing::debug!(%kernel, %how, "rc4+ kernel");
    }
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`ivcsd torrent show x | head`) is not a failure.
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: most library errors already name
/// their source in their own message, and anyhow's `{:#}` would print it a second time.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x.xml: {source}")]
    struct Named {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::other("disk on fire");
        let named = anyhow::Error::new(Named { source: io() });
        assert_eq!(one_line(&named), "cannot read x.xml: disk on fire");
        let context = anyhow::Error::new(io()).context("error reading the config");
        assert_eq!(one_line(&context), "error reading the config: disk on fire");
        let both = anyhow::Error::new(Named { source: io() }).context("while starting");
        assert_eq!(
            one_line(&both),
            "while starting: cannot read x.xml: disk on fire"
        );
    }
}
