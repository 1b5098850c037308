//! `ivcsd demo`: the whole flow on 127.0.0.1, explained step by step.

use clap::Args;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Size of the demo file in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub size_mib: u64,
    /// Keep the temporary directory afterwards and print where it is.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(_args: DemoArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    super::not_implemented("demo")
}
