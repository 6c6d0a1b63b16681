//! One module per subcommand; each returns the exit status it wants.

mod check;
mod completions;
mod explain;
mod firewall;
mod run;
mod suggest;

use crate::cli::{Cli, Command};
use crate::exit::{Exit, Failure};

pub fn run(cli: Cli) -> Result<Exit, Failure> {
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Pf(args) => firewall::pf(&args),
        Command::Nft(args) => firewall::nft(&args),
        Command::Sbpl(args) => firewall::sbpl(&args),
        Command::Suggest(args) => suggest::run(&args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man => completions::man(),
    }
}
