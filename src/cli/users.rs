//! `ivcsd admin user …`: edits authority.xml locally and atomically.

use super::admin::UserCommand;

pub fn run(_command: UserCommand) -> anyhow::Result<()> {
    super::not_implemented("admin user")
}
